// The one place fsys names Boost.Asio's namespace, and where a program's Asio
// configuration is checked against the one libfsys was built with.
#pragma once

#include <fsys/config.hpp>

#include <boost/asio/detail/config.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>

// Why the check. libfsys creates Asio operations (the eventfd read that wakes
// the io_context, timers, posted functions) on the program's io_context, and
// the program's handlers and libfsys's operations recycle each other's memory
// through Asio's per-thread cache. Asio's configuration macros change those
// types: with BOOST_ASIO_HAS_IO_URING a cached block's size is counted in
// 8-byte units instead of 4, so a block freed by a library built without the
// define looks twice its size to a program built with it (heap corruption);
// with BOOST_ASIO_DISABLE_EPOLL too, the io_context runs io_uring instead of
// the epoll reactor the library would wait on (a hang). Such a program and
// library break the one-definition rule; so the mismatch is refused here, at
// compile time, and once more at link time below (headers of one build
// against the library of another).
//
// FSYS_NO_ASIO_CONFIG_CHECK turns both off, for a translation unit that reads
// fsys's declarations but never links libfsys.
#if !defined(FSYS_NO_ASIO_CONFIG_CHECK)

#if defined(BOOST_ASIO_HAS_IO_URING) != FSYS_BUILT_ASIO_HAS_IO_URING
#if FSYS_BUILT_ASIO_HAS_IO_URING
#error "fsys: libfsys was built with BOOST_ASIO_HAS_IO_URING and this program is compiled without it. Asio's internal types differ between the two; define it here too (fsys's Meson dependency, pkg-config file and CMake target pass it), or use a libfsys built with -Dasio_io_uring=disabled."
#else
#error "fsys: this program is compiled with BOOST_ASIO_HAS_IO_URING and libfsys was built without it. Asio's internal types differ between the two (memory corruption). Build fsys with -Dasio_io_uring=files (or =default for BOOST_ASIO_DISABLE_EPOLL too), or compile without the define."
#endif
#endif

#if defined(BOOST_ASIO_HAS_EPOLL) != FSYS_BUILT_ASIO_HAS_EPOLL
#error "fsys: Asio's reactor differs between this program and libfsys (BOOST_ASIO_DISABLE_EPOLL is defined in one of them). Build fsys with -Dasio_io_uring=default for BOOST_ASIO_HAS_IO_URING + BOOST_ASIO_DISABLE_EPOLL, or compile both the same way."
#endif

#if defined(BOOST_ASIO_HAS_EVENTFD) != FSYS_BUILT_ASIO_HAS_EVENTFD
#error "fsys: BOOST_ASIO_DISABLE_EVENTFD differs between this program and libfsys; Asio's reactor types differ. Compile both the same way."
#endif

#if defined(BOOST_ASIO_HAS_THREADS) != FSYS_BUILT_ASIO_HAS_THREADS
#error "fsys: BOOST_ASIO_DISABLE_THREADS differs between this program and libfsys; Asio's scheduler types differ. Compile both the same way."
#endif

#if defined(BOOST_ASIO_ENABLE_HANDLER_TRACKING) != FSYS_BUILT_ASIO_ENABLE_HANDLER_TRACKING
#error "fsys: BOOST_ASIO_ENABLE_HANDLER_TRACKING differs between this program and libfsys; it changes the layout of every Asio operation. Compile both the same way."
#endif

#if defined(BOOST_ASIO_ENABLE_BUFFER_DEBUGGING) != FSYS_BUILT_ASIO_ENABLE_BUFFER_DEBUGGING
#error "fsys: Asio's buffer debugging (BOOST_ASIO_ENABLE_BUFFER_DEBUGGING, on with _GLIBCXX_DEBUG) differs between this program and libfsys; it changes the layout of asio::mutable_buffer. Compile both the same way."
#endif

// The link-time check: every translation unit that includes this header
// refers to a symbol named after its own Asio configuration, and libfsys
// defines only the one of the configuration it was compiled with
// (lib/asio_config.cpp). A mismatch the preprocessor could not see (the
// headers of one fsys build, the library of another) fails to link with
// "undefined reference to fsys::detail::libfsys_built_for::asio_<config>".
#if defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
#define FSYS_ASIO_ABI_REACTOR_ io_uring_only
#elif defined(BOOST_ASIO_HAS_IO_URING)
#define FSYS_ASIO_ABI_REACTOR_ io_uring_files
#elif defined(BOOST_ASIO_HAS_EPOLL)
#define FSYS_ASIO_ABI_REACTOR_ epoll
#else
#define FSYS_ASIO_ABI_REACTOR_ select
#endif
#if defined(BOOST_ASIO_HAS_EVENTFD)
#define FSYS_ASIO_ABI_EVENTFD_ eventfd
#else
#define FSYS_ASIO_ABI_EVENTFD_ pipe
#endif
#if defined(BOOST_ASIO_HAS_THREADS)
#define FSYS_ASIO_ABI_THREADS_ threads
#else
#define FSYS_ASIO_ABI_THREADS_ no_threads
#endif
#if defined(BOOST_ASIO_ENABLE_HANDLER_TRACKING)
#define FSYS_ASIO_ABI_TRACKING_ handler_tracking
#else
#define FSYS_ASIO_ABI_TRACKING_ untracked
#endif
#if defined(BOOST_ASIO_ENABLE_BUFFER_DEBUGGING)
#define FSYS_ASIO_ABI_BUFFERS_ buffer_debugging
#else
#define FSYS_ASIO_ABI_BUFFERS_ plain_buffers
#endif
#define FSYS_ASIO_ABI_JOIN_(a, b, c, d, e) asio_##a##__##b##__##c##__##d##__##e
#define FSYS_ASIO_ABI_JOIN(a, b, c, d, e) FSYS_ASIO_ABI_JOIN_(a, b, c, d, e)
/// @private The symbol that names this translation unit's Asio configuration.
#define FSYS_ASIO_ABI_SYMBOL                                                                     \
  FSYS_ASIO_ABI_JOIN(FSYS_ASIO_ABI_REACTOR_, FSYS_ASIO_ABI_EVENTFD_, FSYS_ASIO_ABI_THREADS_, \
                     FSYS_ASIO_ABI_TRACKING_, FSYS_ASIO_ABI_BUFFERS_)

namespace fsys::detail::libfsys_built_for {
extern const char FSYS_ASIO_ABI_SYMBOL;
/// @private Keeps the reference in every object file (8 bytes of data).
[[gnu::used]] static const char* const asio_config_anchor = &FSYS_ASIO_ABI_SYMBOL;
}  // namespace fsys::detail::libfsys_built_for

#endif  // !defined(FSYS_NO_ASIO_CONFIG_CHECK)

namespace fsys {
namespace asio = boost::asio;
}  // namespace fsys
