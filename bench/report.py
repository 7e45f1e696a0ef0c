#!/usr/bin/env python3
"""Turns the JSON output of fsys-bench and fsys-bench-asio into
docs/benchmarks.md and docs/benchmarks.png (drawn by gnuplot).

Usage: report.py --out-md docs/benchmarks.md --out-png docs/benchmarks.png
                 --command "scripts/bench" --bench-dir /var/tmp/fsys-bench
                 --elapsed SECONDS results1.json [results2.json ...]
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # a missing tool only leaves a field empty
        return ""


def machine(bench_dir):
    lscpu = {}
    for line in sh("lscpu").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            lscpu[k.strip()] = v.strip()
    src = sh(f"findmnt -no SOURCE --target {bench_dir}")
    fstype = sh(f"findmnt -no FSTYPE --target {bench_dir}")
    dev = os.path.basename(src) if src.startswith("/dev/") else ""
    disk = ""
    if dev:
        base = dev
        parent = sh(f"lsblk -no PKNAME /dev/{dev}")
        if parent:
            base = parent.splitlines()[0]
        q = f"/sys/block/{base}/queue"

        def rd(name):
            try:
                with open(f"{q}/{name}") as f:
                    return f.read().strip()
            except OSError:
                return "?"

        model = sh(f"lsblk -dno MODEL /dev/{base}") or ""
        size = sh(f"lsblk -dno SIZE /dev/{base}")
        virtio = "virtio" if os.path.exists(f"/sys/block/{base}/device/driver") and "virtio" in os.path.realpath(
            f"/sys/block/{base}/device/driver") else ""
        disk = (f"/dev/{base} {size} {virtio} {model}".replace("  ", " ").strip()
                + f", logical/physical block {rd('logical_block_size')}/{rd('physical_block_size')} B"
                + f", write cache: {rd('write_cache')}, rotational={rd('rotational')}")
    return {
        "cpu": lscpu.get("Model name", platform.processor()),
        "cores": lscpu.get("CPU(s)", "?"),
        "hypervisor": lscpu.get("Hypervisor vendor", ""),
        "kernel": platform.release(),
        "mem": sh("free -h | awk '/^Mem:/{print $2}'"),
        "disk": disk,
        "fs": f"{bench_dir} on {src} ({fstype})",
        "liburing": sh("dpkg-query -W -f='${Version}' liburing-dev"),
        "boost": sh("sed -n 's/^#define BOOST_LIB_VERSION \"\\(.*\\)\"/\\1/p' /usr/include/boost/version.hpp"),
        "gbench": sh("dpkg-query -W -f='${Version}' libbenchmark-dev"),
        "gcc": sh("c++ --version | head -1"),
    }


def load(paths):
    """results[case][impl] = dict of median counters, or {'error': msg}."""
    res = {}
    for p in paths:
        with open(p) as f:
            data = json.load(f)
        for b in data["benchmarks"]:
            parts = b.get("run_name", b["name"]).split("/")
            case, impl = parts[0], parts[1]
            if b.get("error_occurred"):
                res.setdefault(case, {})[impl] = {"error": b.get("error_message", "error")}
                continue
            if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
                continue
            keys = ("ops_per_s", "ns_per_op", "enters_per_op", "allocs_per_op", "p50_us", "p99_us", "ops",
                    "cpu_ns_per_op")
            res.setdefault(case, {})[impl] = {k: b[k] for k in keys if k in b}
    return res


def fmt_num(v, digits=0):
    if v is None:
        return "—"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def get(res, case, impl, key="ops_per_s"):
    v = res.get(case, {}).get(impl, {})
    return v.get(key)


THROUGHPUT = [
    ("randread_cache_d1", "4 KiB random reads, page cache, depth 1"),
    ("randread_cache_d32", "4 KiB random reads, page cache, depth 32"),
    ("randread_cold_d32", "4 KiB random reads, pages dropped before each case, depth 32"),
    ("randread_direct_d1", "4 KiB random reads, O_DIRECT, depth 1"),
    ("randread_direct_d32", "4 KiB random reads, O_DIRECT, depth 32"),
    ("randwrite_buffered_d32", "4 KiB random buffered writes, depth 32"),
    ("overwrite_xfs_d1", "4 KiB random buffered overwrites of allocated, cached blocks on loop-mounted XFS, depth 1"),
]

IMPL_DESC = {
    "raw_uring": "raw liburing loop, no setup flags",
    "raw_uring_dt": "raw liburing loop, SINGLE_ISSUER|DEFER_TASKRUN",
    "fsys_co": "fsys co_read_at/co_write_at, N coroutines on one fsys::file, default io_context",
    "fsys_co_ctx1": "same, `io_context{1}` (fsys builds a SINGLE_ISSUER|DEFER_TASKRUN ring)",
    "fsys_cb": "fsys async_read_at/async_write_at with plain callbacks, default io_context",
    "fsys_cb_ctx1": "same, `io_context{1}`",
    "psync_co": "fsys coroutines on the psync backend (`fallback_policy::force_psync`)",
    "psync_cb": "fsys callbacks on the psync backend",
    "asio_co": "Asio random_access_file (BOOST_ASIO_HAS_IO_URING), N coroutines on one object",
    "asio_cb": "Asio random_access_file, plain callbacks",
}


def impl_order(impls):
    order = ["raw_uring", "raw_uring_dt", "fsys_co", "fsys_co_ctx1", "fsys_cb", "fsys_cb_ctx1", "psync_co",
             "psync_cb", "asio_co", "asio_cb"]
    known = [i for i in order if i in impls]
    return known + sorted(i for i in impls if i not in order)


def best(res, case, impls):
    vals = [get(res, case, i) for i in impls]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def throughput_table(res, case):
    rows = res.get(case, {})
    raw = best(res, case, ["raw_uring", "raw_uring_dt"])
    asio = best(res, case, ["asio_co", "asio_cb"])
    out = ["| implementation | ops/s | ns/op | enters/op | allocs/op | × best raw liburing | × best Asio |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for impl in impl_order(rows):
        r = rows[impl]
        if "error" in r:
            out.append(f"| `{impl}` | skipped: {r['error']} | | | | | |")
            continue
        ops = r.get("ops_per_s")
        ent = r.get("enters_per_op")
        out.append(f"| `{impl}` | {fmt_num(ops)} | {fmt_num(r.get('ns_per_op'))} | "
                   f"{'n/a' if ent is None else f'{ent:.3f}'} | {r.get('allocs_per_op', 0):.4f} | "
                   f"{fmt_ratio(ratio(ops, raw))} | {fmt_ratio(ratio(ops, asio))} |")
    return "\n".join(out)


def latency_table(res):
    case = "durable_latency_d1"
    rows = res.get(case, {})
    two = get(res, case, "fsys_write_then_fdatasync_co", "p50_us")
    sysc = get(res, case, "pwrite_fdatasync", "p50_us")
    out = ["| implementation | p50 µs | p99 µs | ops/s | enters/op | allocs/op | p50 × fsys two round trips | "
           "p50 × pwrite+fdatasync |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for impl in sorted(rows, key=lambda i: (rows[i].get("p50_us") or 1e18)):
        r = rows[impl]
        if "error" in r:
            out.append(f"| `{impl}` | skipped: {r['error']} | | | | | | |")
            continue
        ent = r.get("enters_per_op")
        p50 = r.get("p50_us")
        out.append(f"| `{impl}` | {fmt_num(p50)} | {fmt_num(r.get('p99_us'))} | {fmt_num(r.get('ops_per_s'))} | "
                   f"{'n/a' if ent is None else f'{ent:.2f}'} | {r.get('allocs_per_op', 0):.2f} | "
                   f"{fmt_ratio(ratio(p50, two))} | {fmt_ratio(ratio(p50, sysc))} |")
    return "\n".join(out)


def writers_table(res):
    case = "durable_32writers"
    rows = res.get(case, {})
    raw = get(res, case, "raw_uring_linked")
    sysc = get(res, case, "pwrite_fdatasync_32t")
    out = ["| implementation | durable writes/s | enters/op | allocs/op | × raw liburing linked | "
           "× pwrite+fdatasync, 32 threads |",
           "|---|---:|---:|---:|---:|---:|"]
    for impl in sorted(rows, key=lambda i: -(rows[i].get("ops_per_s") or 0)):
        r = rows[impl]
        if "error" in r:
            out.append(f"| `{impl}` | skipped: {r['error']} | | | | |")
            continue
        ent = r.get("enters_per_op")
        ops = r.get("ops_per_s")
        out.append(f"| `{impl}` | {fmt_num(ops)} | {'n/a' if ent is None else f'{ent:.2f}'} | "
                   f"{r.get('allocs_per_op', 0):.2f} | {fmt_ratio(ratio(ops, raw))} | {fmt_ratio(ratio(ops, sysc))} |")
    return "\n".join(out)


def blocking_table(res, kind):
    prefix = "blocking_randread_cache_" if kind == "read" else "blocking_randwrite_buffered_"
    plain = "pread" if kind == "read" else "pwrite"
    out = [f"| threads | blocking_ring ops/s | enters/op | allocs/op | ring only (no fast path) | ring only enters/op | "
           f"blocking_ring on psync | seed owner thread | plain {plain} | × seed | × {plain} | ring only × seed | "
           f"ring only × {plain} |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in (1, 4, 16):
        case = f"{prefix}{t}t"
        br = get(res, case, "blocking_ring")
        ent = get(res, case, "blocking_ring", "enters_per_op")
        al = get(res, case, "blocking_ring", "allocs_per_op")
        ro = get(res, case, "blocking_ring_ring_only")
        roe = get(res, case, "blocking_ring_ring_only", "enters_per_op")
        ps = get(res, case, "blocking_ring_psync")
        seed = get(res, case, "seed_owner_thread")
        pl = get(res, case, plain)
        out.append(f"| {t} | {fmt_num(br)} | {'n/a' if ent is None else f'{ent:.3f}'} | "
                   f"{'—' if al is None else f'{al:.3f}'} | {fmt_num(ro)} | {'n/a' if roe is None else f'{roe:.3f}'} | "
                   f"{fmt_num(ps)} | {fmt_num(seed)} | {fmt_num(pl)} | "
                   f"{fmt_ratio(ratio(br, seed))} | {fmt_ratio(ratio(br, pl))} | "
                   f"{fmt_ratio(ratio(ro, seed))} | {fmt_ratio(ratio(ro, pl))} |")
    return "\n".join(out)


THREAD_CASES = [
    ("threads_randread_cache_d32", "4 KiB random reads, page cache, depth 32 per thread"),
    ("threads_randread_direct_d32", "4 KiB random reads, O_DIRECT, depth 32 per thread"),
    ("threads_randwrite_buffered_d32", "4 KiB random buffered writes (overwrite), depth 32 per thread"),
]

THREAD_VARIANTS = {
    "fsys_one_ctx": "one io_context and one `fsys::file`, run by T threads; 32·T coroutines co_spawned onto it; "
                    "`inline_fast_path = false` (every operation through the ring)",
    "fsys_one_ctx_fast": "the same with `inline_fast_path = true`",
    "fsys_ctx_per_thread": "T io_contexts, one per thread, each with its own `fsys::file` on the same file and "
                           "32 coroutines; fast path off",
    "fsys_ctx_per_thread_fast": "the same with the fast path on",
    "pread": "T threads calling pread (one operation in flight per thread)",
    "preadv2_nowait": "T threads calling preadv2 with RWF_NOWAIT, the call the inline fast path makes for each "
                      "cached read (the floor of any read that must never block its thread)",
    "pwrite": "T threads calling pwrite",
}


def thread_split(impl):
    """'fsys_one_ctx_fast_2t' -> ('fsys_one_ctx_fast', 2), or None."""
    head, sep, tail = impl.rpartition("_")
    if not sep or not tail.endswith("t") or not tail[:-1].isdigit():
        return None
    return head, int(tail[:-1])


def thread_counts(res):
    ts = set()
    for case, _ in THREAD_CASES:
        for impl in res.get(case, {}):
            sp = thread_split(impl)
            if sp:
                ts.add(sp[1])
    return sorted(ts)


def thread_ratio(res, case, variant, t):
    """ops/s of `variant` at t threads divided by its ops/s at 1 thread."""
    return ratio(get(res, case, f"{variant}_{t}t"), get(res, case, f"{variant}_1t"))


def threads_table(res, case):
    rows = res.get(case, {})
    ts = thread_counts(res)
    variants = []
    for impl in rows:
        sp = thread_split(impl)
        if sp and sp[0] not in variants:
            variants.append(sp[0])
    order = list(THREAD_VARIANTS)
    variants.sort(key=lambda v: (order.index(v) if v in order else len(order), v))
    more = [t for t in ts if t != 1]
    head = "| variant | " + " | ".join(f"{t} thr ops/s" for t in ts) + " | " + \
        " | ".join(f"{t} thr ÷ 1 thr" for t in more) + " | " + \
        " | ".join(f"{t} thr CPU ns/op" for t in ts) + " | " + \
        " | ".join(f"CPU/op {t} thr ÷ 1 thr" for t in more) + " |"
    out = [head, "|---|" + "---:|" * (2 * len(ts) + 2 * len(more))]
    for v in variants:
        cells = []
        for t in ts:
            r = rows.get(f"{v}_{t}t")
            cells.append("—" if r is None else ("skipped" if "error" in r else fmt_num(r.get("ops_per_s"))))
        cells += [fmt_ratio(thread_ratio(res, case, v, t)) for t in more]
        cpu = {t: get(res, case, f"{v}_{t}t", "cpu_ns_per_op") for t in ts}
        cells += [fmt_num(cpu[t]) for t in ts]
        cells += [fmt_ratio(ratio(cpu[t], cpu.get(1))) for t in more]
        out.append(f"| `{v}` | " + " | ".join(cells) + " |")
    return "\n".join(out)


SERVE_CASE = "serve_small_file_d32"
SERVE_ROWS = [
    ("blocking_syscalls", "open + statx + pread + close, blocking, one request after the other on the loop thread"),
    ("blocking_in_4_frames", "the same four calls, each inside a nested `asio::awaitable` of its own, 32 coroutines, "
     "a trip through the io_context every 16 requests: the floor of a coroutine form"),
    ("blocking_plus_4_posts", "the same four calls, each followed by `co_await asio::post`, 32 coroutines: the floor "
     "of a form that completes through handlers"),
    ("fsys_co_forms_ctx1", "`co_open`, `co_stat`, `co_read_at`, `co_close`, 32 coroutines, `io_context{1}`"),
    ("fsys_async_ctx1", "`async_open`, `async_stat`, `async_read_at`, `async_close` with `as_tuple(use_awaitable)`"),
    ("psync_co", "the `async_*` forms on the psync backend"),
]


def serve_table(res):
    rows = res.get(SERVE_CASE, {})
    base = get(res, SERVE_CASE, "blocking_syscalls")
    out = ["| variant | what it does | requests/s | ns/request | × blocking | allocs/request |",
           "|---|---|---:|---:|---:|---:|"]
    for impl, desc in SERVE_ROWS:
        if impl not in rows:
            continue
        v = get(res, SERVE_CASE, impl)
        out.append(f"| `{impl}` | {desc} | {fmt_num(v)} | {fmt_num(get(res, SERVE_CASE, impl, 'ns_per_op'))} | "
                   f"{fmt_ratio(ratio(v, base))} | {fmt_num(get(res, SERVE_CASE, impl, 'allocs_per_op'), 4)} |")
    return "\n".join(out)


def targets(res):
    """(description, measured text, met: True/False/None)."""
    out = []

    def add(desc, value, thr, higher_is_better=True, unit="×"):
        if value is None:
            out.append((desc, "not measured", None))
            return
        met = value >= thr if higher_is_better else value <= thr
        if met:
            by = ""
        elif higher_is_better:
            by = f" — missed by {(1 - value / thr) * 100:.0f}% (needs {thr / value:.2f}× more)"
        elif thr == 0:
            by = " — missed"
        else:
            by = f" — missed by {(value / thr - 1) * 100:.0f}%"
        shown = f"{value:.4f}" if unit == "" else f"{value:.2f}"
        out.append((desc, f"{shown}{unit} (target {'≥' if higher_is_better else '≤'} {thr}{unit}){by}", met))

    for impl in ("fsys_co", "fsys_co_ctx1"):
        c = "randread_cache_d32"
        v = get(res, c, impl)
        add(f"page-cache reads d32, `{impl}` vs best raw liburing", ratio(v, best(res, c, ["raw_uring", "raw_uring_dt"])), 0.9)
        add(f"page-cache reads d32, `{impl}` vs best Asio", ratio(v, best(res, c, ["asio_co", "asio_cb"])), 3.0)
    # Issue 14 (inline fast path).
    raw2 = ["raw_uring", "raw_uring_dt"]
    for impl in ("fsys_co", "fsys_cb"):
        c = "randread_cache_d1"
        add(f"page-cache reads d1, `{impl}` vs best raw liburing", ratio(get(res, c, impl), best(res, c, raw2)), 1.3)
        add(f"page-cache reads d1, `{impl}` vs pread", ratio(get(res, c, impl), get(res, c, "pread_1t")), 0.85)
    add("page-cache reads d32, `fsys_co` vs best raw liburing (issue 14)",
        ratio(get(res, "randread_cache_d32", "fsys_co"), best(res, "randread_cache_d32", raw2)), 1.2)
    for impl in ("fsys_co", "fsys_cb"):
        c = "randread_cold_d32"
        add(f"cold reads d32, `{impl}` vs best raw liburing", ratio(get(res, c, impl), best(res, c, raw2)), 0.95)
    if "overwrite_xfs_d1" in res:
        for impl in ("fsys_co", "fsys_cb"):
            c = "overwrite_xfs_d1"
            add(f"XFS overwrites d1, `{impl}` vs best raw liburing", ratio(get(res, c, impl), best(res, c, raw2)), 1.2)
    for impl in ("fsys_co", "fsys_co_ctx1"):
        c = "randread_direct_d32"
        add(f"O_DIRECT reads d32, `{impl}` vs best raw liburing",
            ratio(get(res, c, impl), best(res, c, ["raw_uring", "raw_uring_dt"])), 0.95)
    for impl in ("fsys_co", "fsys_co_ctx1", "fsys_cb", "fsys_cb_ctx1"):
        c = "randwrite_buffered_d32"
        v = get(res, c, impl)
        add(f"buffered writes d32, `{impl}` vs best raw liburing", ratio(v, best(res, c, ["raw_uring", "raw_uring_dt"])), 0.9)
        add(f"buffered writes d32, `{impl}` vs best Asio", ratio(v, best(res, c, ["asio_co", "asio_cb"])), 10.0)
    c = "durable_latency_d1"
    for impl in ("fsys_linked_co", "fsys_linked_co_ctx1"):
        p50 = get(res, c, impl, "p50_us")
        add(f"linked write+fsync p50, `{impl}` vs fsys two round trips",
            ratio(p50, get(res, c, "fsys_write_then_fdatasync_co", "p50_us")), 0.95, False)
        add(f"linked write+fsync p50, `{impl}` vs pwrite+fdatasync",
            ratio(p50, get(res, c, "pwrite_fdatasync", "p50_us")), 1.1, False)
    for case, _ in THROUGHPUT:
        if case not in res:
            continue
        for impl in ("fsys_cb", "fsys_cb_ctx1"):
            add(f"allocations/op, `{case}/{impl}`", get(res, case, impl, "allocs_per_op"), 0.0, False, "")
        for impl in ("fsys_co", "fsys_co_ctx1"):
            add(f"allocations/op, `{case}/{impl}`", get(res, case, impl, "allocs_per_op"), 1.0, False, "")
    for kind, prefix, plain in (("reads", "blocking_randread_cache_", "pread"),
                                ("writes", "blocking_randwrite_buffered_", "pwrite")):
        add(f"blocking_ring {kind}, 16 threads vs seed design",
            ratio(get(res, prefix + "16t", "blocking_ring"), get(res, prefix + "16t", "seed_owner_thread")), 3.0)
        add(f"blocking_ring {kind}, 1 thread vs plain {plain}",
            ratio(get(res, prefix + "1t", "blocking_ring"), get(res, prefix + "1t", plain)), 0.8)
    # Serving small files (issue 13).
    c = SERVE_CASE
    for impl in ("fsys_co_forms_ctx1", "fsys_async_ctx1"):
        add(f"serving a small cached file, `{impl}` vs the blocking calls",
            ratio(get(res, c, impl), get(res, c, "blocking_syscalls")), 0.8)
    # Thread scaling (issue 15), at 2 threads.
    c = "threads_randread_cache_d32"
    for v in ("fsys_one_ctx", "fsys_one_ctx_fast"):
        add(f"cached reads d32/thread, `{v}` 2 threads ÷ 1 thread", thread_ratio(res, c, v, 2), 1.8)
    add("cached reads d32/thread, `fsys_one_ctx_fast` 2 threads ÷ `pread` 2 threads",
        ratio(get(res, c, "fsys_one_ctx_fast_2t"), get(res, c, "pread_2t")), 0.9)
    add("cached reads d32/thread, `fsys_ctx_per_thread` 2 threads ÷ 1 thread",
        thread_ratio(res, c, "fsys_ctx_per_thread", 2), 1.9)
    add("O_DIRECT reads d32/thread, `fsys_one_ctx` 2 threads ÷ 1 thread",
        thread_ratio(res, "threads_randread_direct_d32", "fsys_one_ctx", 2), 1.0)
    add("buffered writes d32/thread, `fsys_one_ctx` 2 threads ÷ 1 thread",
        thread_ratio(res, "threads_randwrite_buffered_d32", "fsys_one_ctx", 2), 1.0)
    return out


def chart(res, png):
    impls = [("raw_uring", "raw liburing"), ("raw_uring_dt", "raw liburing DT"), ("fsys_co", "fsys co"),
             ("fsys_co_ctx1", "fsys co ctx{1}"), ("fsys_cb", "fsys callbacks"), ("fsys_cb_ctx1", "fsys cb ctx{1}"),
             ("psync_co", "fsys psync backend"), ("asio_co", "Asio random_access_file"), ("pthreads", "pread/pwrite threads")]
    labels = {"randread_cache_d1": "cached read d1", "randread_cache_d32": "cached read d32",
              "randread_direct_d1": "O_DIRECT read d1", "randread_direct_d32": "O_DIRECT read d32",
              "randwrite_buffered_d32": "buffered write d32", "randread_cold_d32": "cold read d32",
              "overwrite_xfs_d1": "XFS overwrite d1"}
    tmp = tempfile.mkdtemp(prefix="fsys-bench-plot-")
    top = os.path.join(tmp, "throughput.dat")
    with open(top, "w") as f:
        f.write("case " + " ".join(f'"{l}"' for _, l in impls) + "\n")
        for case, _ in THROUGHPUT:
            if case not in res:
                continue
            rows = res.get(case, {})
            raw = best(res, case, ["raw_uring", "raw_uring_dt"])
            vals = []
            for impl, _ in impls:
                if impl == "pthreads":
                    key = next((k for k in rows if k.startswith("pread_") or k.startswith("pwrite_")), None)
                    v = get(res, case, key) if key else None
                else:
                    v = get(res, case, impl)
                r = ratio(v, raw)
                vals.append("NaN" if r is None else f"{r:.4f}")
            f.write(f'"{labels[case]}" ' + " ".join(vals) + "\n")
        # Durable writes with 32 writers: the same columns, relative to the
        # raw liburing linked write+fsync loop.
        c = "durable_32writers"
        dur = {"raw_uring": "raw_uring_linked", "fsys_co": "fsys_linked_co", "fsys_co_ctx1": "fsys_linked_co_ctx1",
               "fsys_cb": "fsys_linked_cb", "psync_co": "psync_linked_co", "asio_co": "asio_write_then_sync_data",
               "pthreads": "pwrite_fdatasync_32t"}
        raw = get(res, c, "raw_uring_linked")
        vals = []
        for impl, _ in impls:
            r = ratio(get(res, c, dur[impl]), raw) if impl in dur else None
            vals.append("NaN" if r is None else f"{r:.4f}")
        f.write('"durable, 32 writers" ' + " ".join(vals) + "\n")
    bottom = os.path.join(tmp, "blocking.dat")
    with open(bottom, "w") as f:
        f.write('case "fsys blocking_ring" "blocking_ring, ring only" "seed owner thread" "plain pread/pwrite" '
                '"blocking_ring (psync backend)"\n')
        for kind, prefix, plain in (("read", "blocking_randread_cache_", "pread"),
                                    ("write", "blocking_randwrite_buffered_", "pwrite")):
            for t in (1, 4, 16):
                c = f"{prefix}{t}t"
                vals = [get(res, c, i) for i in ("blocking_ring", "blocking_ring_ring_only", "seed_owner_thread", plain,
                                                 "blocking_ring_psync")]
                f.write(f'"{kind}, {t} thr" ' + " ".join("NaN" if v is None else f"{v / 1000:.2f}" for v in vals) + "\n")
    gp = os.path.join(tmp, "plot.gp")
    with open(gp, "w") as f:
        f.write(f"""
set terminal pngcairo size 1500,1100 font "DejaVu Sans,11"
set output "{png}"
set datafile missing "NaN"
set termoption noenhanced
set multiplot layout 2,1 title "fsys benchmarks (4 KiB operations; medians of 5 runs; this machine)" font ",14"
colors = "#404040 #9a9a9a #1f5fbf #7fb2ef #2e9e3e #98d98e #f08c00 #d62728 #8e44ad"
colors2 = "#1f5fbf #7fb2ef #d62728 #8e44ad #f08c00"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key outside right top vertical
set ylabel "throughput ÷ best raw liburing loop"
set title "Asynchronous IO: throughput relative to the best raw liburing loop of the same case (1.0 = as fast as raw liburing; higher is better)"
set yrange [0:*]
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2 lc rgb "black" front
plot for [i=2:{len(impls) + 1}] "{top}" using i:xtic(1) title columnheader(i) lc rgb word(colors, i - 1)
unset arrow
set title "Blocking callers (issue 3): thousands of 4 KiB operations per second, cached reads and buffered writes"
set ylabel "k ops/s (higher is better)"
plot for [i=2:6] "{bottom}" using i:xtic(1) title columnheader(i) lc rgb word(colors2, i - 1)
unset multiplot
""")
    r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit("gnuplot failed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--out-png", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--bench-dir", required=True)
    ap.add_argument("--elapsed", type=float, default=0)
    ap.add_argument("--load-start", default="")
    ap.add_argument("--load-end", default="")
    ap.add_argument("--notes", default="")
    ap.add_argument("--appendix", action="append", default=[],
                    help="hand-written markdown appended verbatim (measurements made outside this suite)")
    ap.add_argument("results", nargs="+")
    a = ap.parse_args()
    res = load(a.results)
    m = machine(a.bench_dir)
    chart(res, a.out_png)

    md = []
    w = md.append
    w("# Benchmarks\n")
    w("Generated by `scripts/bench` from one run of `fsys-bench` and `fsys-bench-asio`; every number below comes "
      "from that run. Each case is run 5 times and the **median** is shown. Re-run `scripts/bench` to regenerate "
      "this page and the chart.\n")
    w("## Machine and command\n")
    w(f"- CPU: {m['cpu']}, {m['cores']} CPUs" + (f" ({m['hypervisor']} guest)" if m["hypervisor"] else ""))
    w(f"- Memory: {m['mem']}; kernel {m['kernel']}")
    w(f"- Disk: {m['disk']}")
    w(f"- Data files: {m['fs']}; a 256 MiB file for reads (read once before the cases so it is in the page "
      "cache; O_DIRECT reads bypass it), a 256 MiB file for buffered writes, a 16 MiB file for durable writes")
    w(f"- Software: {m['gcc']}; liburing {m['liburing']}; Boost {m['boost']}; Google Benchmark {m['gbench']}; "
      "release build (`-Dbuildtype=release -Db_ndebug=true`)")
    w(f"- Command: `{a.command}`, which runs")
    w("  `build-bench/bench/fsys-bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true --benchmark_enable_random_interleaving=true` and the same "
      "for `build-bench/bench/fsys-bench-asio`" + (f" (whole run: {a.elapsed:.0f} s)" if a.elapsed else ""))
    if a.load_start:
        w(f"- Load average (1, 5, 15 min) when the run started: {a.load_start}; when it ended: "
          f"{a.load_end or ' '.join(open('/proc/loadavg').read().split()[:3])}. The VM has 2 CPUs; the benchmark itself runs up to 32 "
          "threads, which raises the value at the end. A load far above 2 at the start means other processes "
          "(compilers, tests) shared the CPUs, which lowers and blurs every number, thread hand-offs most.")
    w("")
    w("![fsys benchmarks](benchmarks.png)\n")
    w("## How to read this\n")
    w("- **ops/s** and **ns/op** are measured by the case itself over its timed window (a fixed operation budget or "
      f"0.4 s, whichever ends first), after a short warm-up on the same io_context/ring. Every read is checked "
      "(byte count and block content), every write's count and every fsync's result; a mismatch aborts the run.")
    w("- **enters/op**: `io_uring_enter` calls per operation — `uring_service::stats().enter_calls` for fsys, the "
      "loop's own count for the raw liburing loops and the seed design; n/a where it is not countable "
      "(Asio, pread/pwrite, psync).")
    w("- **allocs/op**: calls of the replaced global `operator new` during the timed window, divided by the "
      "operations; this includes the N coroutine frames spawned per window (N/ops, < 0.001 here).")
    w("- **× best raw liburing**: ops/s divided by the faster of the two raw liburing loops "
      "(`raw_uring`: no setup flags; `raw_uring_dt`: SINGLE_ISSUER|DEFER_TASKRUN) of the same case. "
      "**× best Asio**: divided by the faster of Asio's coroutine and callback variants.")
    w("- `_ctx1` rows use `asio::io_context ctx{1}`; with concurrency hint 1 fsys builds its ring with "
      "SINGLE_ISSUER|DEFER_TASKRUN (the benchmark checks that it did). Other fsys rows use a default io_context "
      "(COOP_TASKRUN ring). All fsys asynchronous cases run the io_context on the benchmark thread.\n")
    w("Implementations:\n")
    for k, v in IMPL_DESC.items():
        w(f"- `{k}`: {v}")
    w("- `pread_Nt` / `pwrite_Nt`: N threads each calling pread/pwrite (N = the depth)")
    w("")
    w("## Targets\n")
    w("| target | measured | met |")
    w("|---|---|:---:|")
    for desc, val, met in targets(res):
        w(f"| {desc} | {val} | {'yes' if met else ('—' if met is None else '**no**')} |")
    w("")
    if a.notes and os.path.exists(a.notes):
        with open(a.notes) as f:
            w(f.read().rstrip() + "\n")
    for case, title in THROUGHPUT:
        if case not in res:
            continue  # overwrite_xfs_d1 without an XFS mount (scripts/bench says why)
        w(f"## {title} (`{case}`)\n")
        w(throughput_table(res, case))
        w("")
    if SERVE_CASE in res:
        w(f"## Serving a small cached file per request (`{SERVE_CASE}`, issue 13)\n")
        w("1024 files of 4 KiB, all cached; each request opens a random one, stats it, reads 4 KiB and closes it; "
          "32 requests in flight on one io_context run by the benchmark thread. Every read is checked.\n")
        w(serve_table(res))
        w("")
    if any(case in res for case, _ in THREAD_CASES):
        w("## Thread scaling (issue 15)\n")
        w("The same workload run by T threads (T from `FSYS_BENCH_THREADS`, default `1,2`; the cases take any list, "
          "e.g. `FSYS_BENCH_THREADS=1,2,4,8,16` on a bigger machine), depth 32 per thread, 4 KiB random blocks. "
          "Every coroutine or thread has its own share of the operation budget and the common deadline, so the "
          "harness shares no counter between threads. **T thr ÷ 1 thr** divides a variant's ops/s at T threads by "
          "its own ops/s at 1 thread (2.0× = perfect scaling on 2 CPUs). **CPU ns/op** is the CPU time of the whole "
          "process (every thread, io-wq workers included) in the window divided by the operations; other processes "
          "on the machine do not change it, so **CPU/op T thr ÷ 1 thr** shows what each added thread costs per "
          "operation (1.0× = nothing: lock contention and cache lines moving between CPUs raise it).\n")
        for k, v in THREAD_VARIANTS.items():
            w(f"- `{k}`: {v}")
        w("")
        for case, title in THREAD_CASES:
            if case not in res:
                continue
            w(f"### {title} (`{case}`)\n")
            w(threads_table(res, case))
            w("")
    w("## Durable 4 KiB writes: latency at depth 1 (`durable_latency_d1`)\n")
    w("One writer; each operation is a 4 KiB write at a random block of a 16 MiB file followed by a data sync, "
      "and is timed from start to durable completion. `*_linked*`: write linked to fsync(DATASYNC) in one "
      "submission; `fsys_write_then_fdatasync*`: `co_write_at` then `co_fdatasync` (two round trips); "
      "`pwrite_fdatasync`: the two syscalls; `asio_write_then_sync_data`: Asio's async write, then its "
      "synchronous `sync_data()` (Asio has no asynchronous fsync).\n")
    w(latency_table(res))
    w("")
    w("## Durable 4 KiB writes with 32 concurrent writers (`durable_32writers`)\n")
    w("32 coroutines (or 32 callback slots, or 32 threads, or 32 in-flight linked pairs for raw liburing) each "
      "doing durable 4 KiB writes at random blocks of the same file; the value is writes made durable per second.\n")
    w(writers_table(res))
    w("")
    w("## Blocking callers (issue 3)\n")
    w("`fsys::blocking_ring` shared by 1, 4 or 16 threads, beside the seed's design (one owner thread takes one "
      "request at a time from a mutex+condvar queue, submits one SQE, waits with `io_uring_submit_and_wait(1)` and "
      "replies through the request's condvar) and plain pread/pwrite from the same number of threads. "
      "`blocking_ring` is the default (caller-thread fast path: `RWF_NOWAIT` first, regular-file writes the "
      "filesystem cannot do without blocking run in the caller); *ring only* sets "
      "`ring_options::caller_thread_fast_path = false`, so every request goes through io_uring.\n")
    w("4 KiB random reads from the cached 256 MiB file:\n")
    w(blocking_table(res, "read"))
    w("")
    w("4 KiB random buffered writes:\n")
    w(blocking_table(res, "write"))
    w("")
    for path in a.appendix:
        with open(path) as f:
            w(f.read().rstrip() + "\n")
    with open(a.out_md, "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
