#!/usr/bin/env bash
# Installs the C library: what `cargo cinstall` (cargo-c) would install, without cargo-c.
#
#   scripts/install.sh [--prefix DIR] [--libdir DIR] [--includedir DIR] [--datadir DIR]
#                      [--profile NAME] [--artifacts DIR]
#
#   --prefix DIR      install prefix (default /usr/local)
#   --libdir DIR      default PREFIX/lib; relative paths are relative to PREFIX (so
#                     --libdir lib/x86_64-linux-gnu works); likewise --includedir
#                     (default PREFIX/include) and --datadir (default PREFIX/share)
#   --profile NAME    cargo profile to build and install (default release; `profiling`
#                     keeps debug info). libucgm.a loses its debug info only for release
#                     (also with --artifacts)
#   --artifacts DIR   install the libucgm.so and libucgm.a in DIR instead of building
#                     (e.g. target/release, or target/release/deps after cargo test)
#   DESTDIR=...       staged install: files go to $DESTDIR$PREFIX/..., while the
#                     installed pkg-config and CMake files name PREFIX (for packaging)
#
# Installs:
#   LIBDIR/libucgm.so.ABI.VERSION   the shared library, SONAME libucgm.so.ABI
#   LIBDIR/libucgm.so.ABI -> libucgm.so.ABI.VERSION, LIBDIR/libucgm.so -> libucgm.so.ABI
#   LIBDIR/libucgm.a
#   INCLUDEDIR/ucgm.h, INCLUDEDIR/ucgm.hpp (header-only C++17 wrapper)
#   LIBDIR/pkgconfig/ucgm.pc, LIBDIR/pkgconfig/ucgm-static.pc
#   LIBDIR/cmake/ucgm/ucgmConfig.cmake, ucgmConfigVersion.cmake (find_package(ucgm))
#   DATADIR/ucgm/valgrind.supp      memcheck suppression for rayon's thread bookkeeping
#
# ABI is UCGM_ABI_VERSION (ucgm_abi_version()), VERSION the package version (Cargo.toml),
# e.g. libucgm.so.1.0.1.0 for ABI 1, version 0.1.0. See README "Installing the C library".
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
prefix=/usr/local
libdir= includedir= datadir= artifacts=
profile=release

die() {
  echo "install.sh: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix | --libdir | --includedir | --datadir | --profile | --artifacts)
      [ $# -ge 2 ] || die "$1 needs a value"
      opt=${1#--}
      printf -v "$opt" '%s' "$2"
      shift 2
      ;;
    --prefix=* | --libdir=* | --includedir=* | --datadir=* | --profile=* | --artifacts=*)
      opt=${1%%=*}
      opt=${opt#--}
      printf -v "$opt" '%s' "${1#*=}"
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

case "$prefix" in
  /*) ;;
  *) prefix="$(pwd)/$prefix" ;;
esac
prefix=${prefix%/}
under_prefix() { # DIR DEFAULT: absolute, relative to the prefix when relative
  case "${1:-$2}" in
    /*) printf '%s' "${1%/}" ;;
    *) printf '%s/%s' "$prefix" "${1:-$2}" ;;
  esac
}
libdir=$(under_prefix "$libdir" lib)
includedir=$(under_prefix "$includedir" include)
datadir=$(under_prefix "$datadir" share)
destdir=${DESTDIR:-}

# The package version and ABI version, from the header (tests/capi_header.rs keeps the
# committed header equal to what build.rs generates from Cargo.toml and src/capi/).
header="$root/include/ucgm.h"
define() { sed -n "s/^#define $1 \(.*\)$/\1/p" "$header" | tr -d '"'; }
version=$(define UCGM_VERSION_STRING)
major=$(define UCGM_VERSION_MAJOR)
minor=$(define UCGM_VERSION_MINOR)
abi=$(define UCGM_ABI_VERSION)
[ -n "$version" ] && [ -n "$major" ] && [ -n "$minor" ] && [ -n "$abi" ] || die "no version macros in $header"
description=$(sed -n 's/^description = "\(.*\)"$/\1/p' "$root/Cargo.toml")
soname="libucgm.so.$abi"
shared_file="$soname.$version"

if [ -z "$artifacts" ]; then
  echo "== cargo build --profile $profile --lib" >&2
  (cd "$root" && cargo build --profile "$profile" --lib)
  artifacts="${CARGO_TARGET_DIR:-$root/target}/$profile"
fi
for f in libucgm.so libucgm.a; do
  [ -f "$artifacts/$f" ] || die "$artifacts/$f not found"
done

# The library must carry the SONAME the links below are named after (build.rs sets it).
if command -v objdump >/dev/null 2>&1; then
  got=$(objdump -p "$artifacts/libucgm.so" | awk '$1 == "SONAME" { print $2 }')
  [ "$got" = "$soname" ] || die "$artifacts/libucgm.so has SONAME '${got}', expected $soname (stale build?)"
fi

# Paths written into the pkg-config file: under ${prefix} where they are.
pc_path() {
  case "$1" in
    "$prefix"/*) printf '${prefix}/%s' "${1#"$prefix"/}" ;;
    *) printf '%s' "$1" ;;
  esac
}
# The CMake package finds the headers and data from its own location (relocatable).
from_libdir() { realpath -m --relative-to="$libdir" "$1"; }
subst() { # TEMPLATE DEST: replaces the @NAME@ placeholders
  local args=() pair value
  for pair in \
    "PREFIX=$prefix" \
    "LIBDIR=$(pc_path "$libdir")" \
    "INCLUDEDIR=$(pc_path "$includedir")" \
    "INCLUDEDIR_FROM_LIBDIR=$(from_libdir "$includedir")" \
    "DATADIR_FROM_LIBDIR=$(from_libdir "$datadir")" \
    "DESCRIPTION=$description" \
    "VERSION=$version" \
    "MAJOR=$major" \
    "MINOR=$minor" \
    "ABI=$abi" \
    "SONAME=$soname" \
    "SHARED_FILE=$shared_file"; do
    value=${pair#*=}
    value=${value//\\/\\\\}
    value=${value//|/\\|}
    value=${value//&/\\&}
    args+=(-e "s|@${pair%%=*}@|$value|g")
  done
  sed "${args[@]}" "$1" >"$2"
  if grep -q '@[A-Z_]*@' "$2"; then
    die "$2: placeholder left: $(grep -o '@[A-Z_]*@' "$2" | head -1)"
  fi
  chmod 644 "$2"
}

lib="$destdir$libdir"
inc="$destdir$includedir"
share="$destdir$datadir/ucgm"
mkdir -p "$lib/pkgconfig" "$lib/cmake/ucgm" "$inc" "$share"

install -m 755 "$artifacts/libucgm.so" "$lib/$shared_file"
ln -sfn "$shared_file" "$lib/$soname"
ln -sfn "$soname" "$lib/libucgm.so"
install -m 644 "$artifacts/libucgm.a" "$lib/libucgm.a"
# Release archives still hold the debug info of the precompiled Rust standard library
# (the profile's strip only applies to what is linked); drop it unless the profile
# keeps debug info on purpose.
if [ "$profile" = release ] && command -v strip >/dev/null 2>&1; then
  strip --strip-debug "$lib/libucgm.a"
fi
install -m 644 "$header" "$inc/ucgm.h"
install -m 644 "$root/ffi/cpp/ucgm.hpp" "$inc/ucgm.hpp"
subst "$root/ffi/pkgconfig/ucgm.pc.in" "$lib/pkgconfig/ucgm.pc"
subst "$root/ffi/pkgconfig/ucgm-static.pc.in" "$lib/pkgconfig/ucgm-static.pc"
subst "$root/ffi/cmake/ucgmConfig.cmake.in" "$lib/cmake/ucgm/ucgmConfig.cmake"
subst "$root/ffi/cmake/ucgmConfigVersion.cmake.in" "$lib/cmake/ucgm/ucgmConfigVersion.cmake"
install -m 644 "$root/ffi/c/valgrind.supp" "$share/valgrind.supp"

echo "installed ucgm $version (ABI $abi, SONAME $soname) into $destdir$prefix" >&2
