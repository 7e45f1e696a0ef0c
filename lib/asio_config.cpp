// The definition the link-time Asio configuration check looks for (see
// <fsys/detail/asio.hpp>): only the symbol of the configuration this library
// is compiled with exists in libfsys.
#include <fsys/detail/asio.hpp>

namespace fsys::detail::libfsys_built_for {
const char FSYS_ASIO_ABI_SYMBOL = 1;
}  // namespace fsys::detail::libfsys_built_for
