#!/bin/sh
# Build the C library (static, -fPIC) and the Python extension in place.
#   python/build.sh [BUILD_DIR]      (default: <repo>/build; PYTHON defaults to /usr/bin/python3)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${1:-$ROOT/build}
PYTHON=${PYTHON:-/usr/bin/python3}
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD" -j2 --target shmstore_static
cd "$HERE"
SHMSTORE_LIB_DIR="$BUILD" "$PYTHON" setup.py -q build_ext --inplace
