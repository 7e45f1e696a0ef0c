// The thread-local storage model of the hot paths' per-thread caches.
#pragma once

// libfsys is usually a shared library, where a thread_local defaults to the
// general-dynamic model: every access calls __tls_get_addr (about 2.5 % of a
// served small file, open + statx + read + close all inline, was spent
// there). The small caches that the inline paths touch on every operation
// (counters, inline-resume count, recycled handles and argument blocks, the
// local-filesystem table: under 400 bytes together) use the initial-exec
// model instead: a fixed offset from the thread pointer. A program linked
// with libfsys reserves that space at startup; a dlopen'ed libfsys takes it
// from the surplus static TLS glibc keeps for such libraries (over 1 KiB by
// default; the tunable glibc.rtld.optional_static_tls raises it).
#define FSYS_HOT_TLS __attribute__((tls_model("initial-exec")))
