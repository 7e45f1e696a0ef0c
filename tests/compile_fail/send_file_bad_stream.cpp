// Must not compile: async_send_file to something that is no stream. The
// check (tests/compile_fail/check.py) expects exactly one error, the
// static_assert naming what async_send_file accepts.
#include <fsys/file.hpp>
#include <fsys/send_file.hpp>

#include <string>

void send_to_a_string(fsys::file& file, std::string& not_a_stream) {
  fsys::async_send_file(not_a_stream, file, 0, 100, [](boost::system::error_code, std::size_t) {});
}
