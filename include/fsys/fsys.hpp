// fsys — all public headers.
#pragma once

#include <fsys/version.hpp>
#include <fsys/error.hpp>
#include <fsys/features.hpp>
#include <fsys/options.hpp>
#include <fsys/engine_stats.hpp>
#include <fsys/uring_service.hpp>
#include <fsys/file_base.hpp>
#include <fsys/file.hpp>
#include <fsys/stream_file.hpp>
#include <fsys/co.hpp>
#include <fsys/file_status.hpp>
#include <fsys/open_how.hpp>
#include <fsys/path_view.hpp>
#include <fsys/filesystem.hpp>
#include <fsys/copy.hpp>
#include <fsys/co_filesystem.hpp>
#include <fsys/whole_file.hpp>
#include <fsys/timeout.hpp>
#include <fsys/blocking_ring.hpp>
#include <fsys/drive.hpp>
#include <fsys/aligned_buffer.hpp>
