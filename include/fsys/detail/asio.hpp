// The one place fsys names Boost.Asio's namespace.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>

namespace fsys {
namespace asio = boost::asio;
}  // namespace fsys
