#!/usr/bin/env bash
# Builds the peer io_uring libraries' side-by-side programs (bench/peers/):
#   condy        github.com/wokron/condy          96a2db2 (header-only, C++20)
#   co_context   github.com/Codesire-Deng/co_context 8f33887 (static library, CMake)
#   liburing4cpp github.com/CarterLi/liburing4cpp  b8eac66 (header-only)
# Not part of the Meson build or CI: it needs the peers' sources.
#
# usage: bench/peers/build.sh [build_dir]        (default: build-peers in the repository)
# Sources, for each peer (first that applies):
#   CONDY_SRC / CO_CONTEXT_SRC / LIBURING4CPP_SRC  a source directory, used as it is
#   the mirror $PEER_MIRROR_ROOT/<owner>+<name>/repo (default root /work/.mirror),
#     if present (the pinned commit)
#   a clone of the public repository, when the network reaches it (the pinned commit)
#   otherwise the peer is skipped, with a message.
# CXX (default g++) compiles; every program is built with its library's own
# release flags (condy: CMake Release -O3 -DNDEBUG; co_context: its CMake
# Release, -O3 -march=native with LTO, applied to the program too, since the
# library's objects are LTO objects; liburing4cpp: its demos' -O3 -DNDEBUG
# -march=native). PEER_CXXFLAGS is added to every compile. PEERS (default
# "condy co_context liburing4cpp") chooses which to build.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$repo/build-peers}
mkdir -p "$out/src"
out=$(cd "$out" && pwd)
CXX=${CXX:-g++}
peers=" ${PEERS:-condy co_context liburing4cpp} "
wanted() { [[ $peers == *" $1 "* ]]; }
extra=${PEER_CXXFLAGS:-}
log=$out/build.log
: > "$log"
built=() skipped=()

say() { echo "build.sh: $*" | tee -a "$log" >&2; }

# get_src NAME OWNER/REPO COMMIT ENVVAR -> prints the source directory, or nothing.
get_src() {
  local name=$1 slug=$2 commit=$3 var=$4
  local given=${!var:-}
  local dest=$out/src/$name
  if [[ -n $given ]]; then
    [[ -d $given ]] || { say "$var=$given is not a directory"; return; }
    # A copy: co_context's CMake writes configured headers into its source tree.
    rm -rf "$dest" && mkdir -p "$dest" && cp -a "$given/." "$dest/" && echo "$dest"
    echo "$name: $given (as given)" >> "$out/sources.txt"
    return
  fi
  local mirror=${PEER_MIRROR_ROOT:-/work/.mirror}/${slug/\//+}/repo
  if [[ -d $mirror ]] && git -C "$mirror" cat-file -e "$commit^{commit}" 2>/dev/null; then
    rm -rf "$dest" && mkdir -p "$dest"
    if git -C "$mirror" archive "$commit" | tar -x -C "$dest"; then
      echo "$name: $mirror @ $commit" >> "$out/sources.txt"
      echo "$dest"
      return
    fi
  fi
  local url=https://github.com/$slug.git
  if timeout 30 git ls-remote "$url" HEAD > /dev/null 2>&1; then
    rm -rf "$dest"
    if git clone -q "$url" "$dest" && git -C "$dest" checkout -q "$commit" &&
      git -C "$dest" submodule update -q --init --recursive > /dev/null 2>&1; then
      echo "$name: $url @ $commit" >> "$out/sources.txt"
      echo "$dest"
      return
    fi
    say "$name: cloning $url at $commit failed"
    return
  fi
  say "$name: no source (set $var, or provide the mirror, or a network that reaches $url): skipped"
}

# liburing: condy calls io_uring_enable_rings, which liburing 2.3's shared
# library does not export (its header declares it); the static library has it,
# and condy's own build links liburing statically too.
uring_link() {
  local libdir
  libdir=$(pkg-config --variable=libdir liburing 2>/dev/null || true)
  if [[ -n $libdir && -f $libdir/liburing.a ]]; then echo "$libdir/liburing.a"; else echo "-luring"; fi
}

# <format> is missing from libstdc++ 12; condy uses std::format for panic messages only.
format_shim() {
  if ! echo '#include <format>' | $CXX -std=c++20 -x c++ -fsyntax-only - > /dev/null 2>&1; then
    echo "-I$here/compat"
  fi
}

: > "$out/sources.txt"
: > "$out/flags.txt"

# ---- condy -------------------------------------------------------------------
src=
wanted condy && src=$(get_src condy wokron/condy 96a2db2 CONDY_SRC)
if [[ -n $src ]]; then
  flags="-std=c++20 -O3 -DNDEBUG $(format_shim) $extra"
  say "condy: $CXX $flags"
  if nice $CXX $flags -I"$src/include" -o "$out/condy-peer" "$here/condy_bench.cpp" $(uring_link) -pthread >> "$log" 2>&1; then
    built+=(condy); echo "condy: $CXX $flags $(uring_link)" >> "$out/flags.txt"
  else
    say "condy: build failed (see $log)"; skipped+=(condy)
  fi
elif wanted condy; then
  skipped+=(condy)
fi

# ---- co_context ---------------------------------------------------------------
src=
wanted co_context && src=$(get_src co_context Codesire-Deng/co_context 8f33887 CO_CONTEXT_SRC)
if [[ -n $src ]]; then
  if ! command -v cmake > /dev/null; then
    say "co_context: cmake not found: skipped"; skipped+=(co_context)
  else
    say "co_context: cmake Release build of the library"
    if nice cmake -S "$src" -B "$out/co_context-build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$CXX" \
        -DBUILD_EXAMPLE=OFF -DBUILD_TEST=OFF >> "$log" 2>&1 &&
      nice cmake --build "$out/co_context-build" -j "$(nproc)" >> "$log" 2>&1; then
      flags="-std=c++20 -O3 -DNDEBUG -march=native -flto=auto $extra"
      say "co_context: $CXX $flags"
      if nice $CXX $flags -I"$src/include" -I"$src/extern/liburingcxx/include" -o "$out/co_context-peer" \
          "$here/co_context_bench.cpp" "$out/co_context-build/libco_context.a" -pthread >> "$log" 2>&1; then
        built+=(co_context); echo "co_context: $CXX $flags (library: its CMake Release)" >> "$out/flags.txt"
      else
        say "co_context: build failed (see $log)"; skipped+=(co_context)
      fi
    else
      say "co_context: CMake build failed (see $log)"; skipped+=(co_context)
    fi
  fi
elif wanted co_context; then
  skipped+=(co_context)
fi

# ---- liburing4cpp -------------------------------------------------------------
src=
wanted liburing4cpp && src=$(get_src liburing4cpp CarterLi/liburing4cpp b8eac66 LIBURING4CPP_SRC)
if [[ -n $src ]]; then
  flags="-std=c++20 -O3 -DNDEBUG -march=native $extra"
  say "liburing4cpp: $CXX $flags"
  if nice $CXX $flags -I"$src/include" -o "$out/liburing4cpp-peer" "$here/liburing4cpp_bench.cpp" -luring -pthread \
      >> "$log" 2>&1; then
    built+=(liburing4cpp); echo "liburing4cpp: $CXX $flags -luring" >> "$out/flags.txt"
  else
    say "liburing4cpp: build failed (see $log)"; skipped+=(liburing4cpp)
  fi
elif wanted liburing4cpp; then
  skipped+=(liburing4cpp)
fi

say "built: ${built[*]:-none}; skipped: ${skipped[*]:-none}; programs in $out"
[[ ${#built[@]} -gt 0 ]]
