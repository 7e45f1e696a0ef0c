// Test support: what the suites share about the backend under test.
#pragma once

#include <fsys/fsys.hpp>

#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdlib>
#include <cstring>

namespace fsys::test {

/// The backend these tests expect: psync when FSYS_DISABLE_IO_URING is set
/// (Meson runs every suite once per backend), io_uring otherwise.
inline fsys::backend expected_backend() {
  return fsys::io_uring_disabled_by_environment() ? fsys::backend::psync : fsys::backend::io_uring;
}

/// Creates the service with `opts` on `ctx` and checks the backend is the one expected.
inline fsys::uring_service& make_ring(boost::asio::execution_context& ctx, fsys::ring_options opts = {}) {
  return boost::asio::make_service<fsys::uring_service>(ctx, opts);
}

}  // namespace fsys::test
