// fsys — all public headers.
#pragma once

#include <fsys/error.hpp>
#include <fsys/features.hpp>
#include <fsys/options.hpp>
#include <fsys/uring_service.hpp>
#include <fsys/file.hpp>
#include <fsys/co.hpp>
#if __has_include(<fsys/blocking_ring.hpp>)
#include <fsys/blocking_ring.hpp>
#endif
#if __has_include(<fsys/drive.hpp>)
#include <fsys/drive.hpp>
#endif
