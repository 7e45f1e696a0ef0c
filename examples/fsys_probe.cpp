// fsys-probe PATH [--json]
// fsys-probe --version
//
// Prints what fsys knows about the storage under PATH (block devices, queue
// limits, O_DIRECT alignment, atomic writes, NVMe identity) and what the
// kernel's io_uring offers, as an aligned table or as JSON.
#include <fsys/drive.hpp>
#include <fsys/features.hpp>
#include <fsys/version.hpp>

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace {

// One output row: a key and an already-rendered value; `quoted` says the
// JSON form needs quotes (strings) rather than a bare number/bool/null.
struct row {
  std::string key;
  std::string value;
  bool quoted = false;
};

std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

class table {
 public:
  void add(std::string key, std::string value, bool quoted) {
    rows_.push_back({std::move(key), std::move(value), quoted});
  }
  void text(std::string key, const std::string& v) { add(std::move(key), v, true); }
  void flag(std::string key, bool v) { add(std::move(key), v ? "true" : "false", false); }
  void number(std::string key, std::uint64_t v) { add(std::move(key), std::to_string(v), false); }
  template <class T>
  void maybe(std::string key, const std::optional<T>& v) {
    if (!v) add(std::move(key), "", false);  // unknown: "-" in text, null in JSON
    else if constexpr (std::is_same_v<T, bool>) flag(std::move(key), *v);
    else if constexpr (std::is_arithmetic_v<T>) number(std::move(key), *v);
    else if constexpr (std::is_same_v<T, std::filesystem::path>) text(std::move(key), v->string());
    else text(std::move(key), *v);
  }

  void print_text(std::ostream& os, std::string_view title) const {
    std::size_t width = 0;
    for (const auto& r : rows_) width = std::max(width, r.key.size());
    os << title << "\n";
    for (const auto& r : rows_)
      os << "  " << r.key << std::string(width - r.key.size() + 2, ' ')
         << (r.value.empty() ? "-" : r.value) << "\n";
  }
  void print_json(std::ostream& os, int indent) const {
    const std::string pad(static_cast<std::size_t>(indent), ' ');
    os << "{\n";
    for (std::size_t i = 0; i < rows_.size(); ++i) {
      const auto& r = rows_[i];
      os << pad << "  \"" << json_escape(r.key) << "\": ";
      if (r.quoted) os << '"' << json_escape(r.value) << '"';
      else os << (r.value.empty() ? "null" : r.value);
      os << (i + 1 < rows_.size() ? ",\n" : "\n");
    }
    os << pad << "}";
  }

 private:
  std::vector<row> rows_;
};

table drive_table(const fsys::drive_info& d) {
  table t;
  t.text("filesystem_device", std::to_string(d.fs_major) + ":" + std::to_string(d.fs_minor));
  std::string stack;
  for (const auto& s : d.device_stack) stack += (stack.empty() ? "" : " -> ") + s;
  t.text("device_stack", stack);
  t.maybe("device_name", d.device_name);
  if (d.disk_major && d.disk_minor)
    t.text("disk_device", std::to_string(*d.disk_major) + ":" + std::to_string(*d.disk_minor));
  else
    t.add("disk_device", "", false);
  t.maybe("logical_block_size", d.logical_block_size);
  t.maybe("physical_block_size", d.physical_block_size);
  t.maybe("dma_alignment", d.dma_alignment);
  t.maybe("rotational", d.rotational);
  t.maybe("volatile_write_cache", d.volatile_write_cache);
  t.maybe("fua", d.fua);
  t.maybe("dio_mem_align", d.dio_mem_align);
  t.maybe("dio_offset_align", d.dio_offset_align);
  t.number("direct_io_alignment", fsys::direct_io_alignment(d));
  t.maybe("sysfs_atomic_write_unit_min", d.sysfs_atomic_write_unit_min);
  t.maybe("sysfs_atomic_write_unit_max", d.sysfs_atomic_write_unit_max);
  t.maybe("sysfs_atomic_write_max", d.sysfs_atomic_write_max);
  t.maybe("statx_atomic_write_unit_min", d.statx_atomic_write_unit_min);
  t.maybe("statx_atomic_write_unit_max", d.statx_atomic_write_unit_max);
  t.maybe("atomic_write_unit", d.atomic_write_unit());
  t.flag("is_nvme", d.is_nvme);
  t.maybe("nvme_controller", d.nvme_controller);
  t.maybe("nvme_namespace_device", d.nvme_namespace_device);
  t.maybe("nvme_nsid", d.nvme_nsid);
  t.maybe("nvme_lba_size", d.nvme_lba_size);
  t.maybe("nawun", d.nawun);
  t.maybe("nawupf", d.nawupf);
  t.maybe("awupf", d.awupf);
  t.flag("nvme_passthrough_disabled", fsys::nvme_passthrough_disabled_by_environment());
  return t;
}

table ring_table(const fsys::ring_features& f) {
  table t;
  t.flag("available", f.available);
  t.text("setup_error", f.setup_error ? f.setup_error.message() : std::string());
  t.flag("disabled_by_environment", f.disabled_by_environment);
  t.flag("coop_taskrun", f.coop_taskrun);
  t.flag("taskrun_flag", f.taskrun_flag);
  t.flag("single_issuer", f.single_issuer);
  t.flag("defer_taskrun", f.defer_taskrun);
  t.flag("submit_all", f.submit_all);
  t.flag("sqpoll", f.sqpoll);
  std::ostringstream hex;
  hex << "0x" << std::hex << f.kernel_features;
  t.text("kernel_features", hex.str());
  t.flag("nodrop", f.nodrop);
  t.flag("op_read", f.op_read);
  t.flag("op_write", f.op_write);
  t.flag("op_readv", f.op_readv);
  t.flag("op_writev", f.op_writev);
  t.flag("op_read_fixed", f.op_read_fixed);
  t.flag("op_write_fixed", f.op_write_fixed);
  t.flag("op_fsync", f.op_fsync);
  t.flag("op_async_cancel", f.op_async_cancel);
  t.flag("op_link_timeout", f.op_link_timeout);
  t.flag("op_uring_cmd", f.op_uring_cmd);
  t.flag("op_openat", f.op_openat);
  t.flag("op_openat2", f.op_openat2);
  t.flag("op_close", f.op_close);
  t.flag("op_statx", f.op_statx);
  t.flag("op_fallocate", f.op_fallocate);
  t.flag("op_ftruncate", f.op_ftruncate);
  t.flag("op_renameat", f.op_renameat);
  t.flag("op_unlinkat", f.op_unlinkat);
  t.flag("op_mkdirat", f.op_mkdirat);
  t.flag("op_symlinkat", f.op_symlinkat);
  t.flag("op_linkat", f.op_linkat);
  t.flag("op_sync_file_range", f.op_sync_file_range);
  t.flag("op_fadvise", f.op_fadvise);
  t.text("fs_ops_through_ring", f.fs_ops_through_ring());
  t.text("summary", f.summary());
  return t;
}

int usage(const char* argv0) {
  std::cerr << "usage: " << argv0 << " PATH [--json]\n       " << argv0 << " --version\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<std::string> path;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--version") {
      std::cout << "fsys-probe (fsys) " << FSYS_VERSION_STRING << "\n";
      return 0;
    }
    if (a == "--json") json = true;
    else if (a.starts_with("-") && a != "-") return usage(argv[0]);
    else if (path) return usage(argv[0]);
    else path = std::string(a);
  }
  if (!path) return usage(argv[0]);

  std::error_code ec;
  const fsys::drive_info info = fsys::probe_drive(*path, ec);
  if (ec) {
    std::cerr << argv[0] << ": " << *path << ": " << ec.message() << "\n";
    return 1;
  }
  const table drive = drive_table(info);
  const table ring = ring_table(fsys::probe_features());

  if (json) {
    std::cout << "{\n  \"path\": \"" << json_escape(*path) << "\",\n  \"drive\": ";
    drive.print_json(std::cout, 2);
    std::cout << ",\n  \"io_uring\": ";
    ring.print_json(std::cout, 2);
    std::cout << "\n}\n";
  } else {
    drive.print_text(std::cout, "drive (" + *path + ")");
    std::cout << "\n";
    ring.print_text(std::cout, "io_uring");
  }
  return 0;
}
