#!/bin/sh
# Run the Python tests (for CTest or by hand). Prints pytest's summary line; exits
# non-zero on failure, 77 (CTest skip) when the extension is not built.
#   PYTHON=/usr/bin/python3 sh python/tests/run.sh [pytest args]
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
cd "$HERE/.."
if ! ls shmstore/_shmstore*.so >/dev/null 2>&1; then
    echo "python tests: shmstore._shmstore is not built (run python/build.sh or the 'python' target)"
    exit 77
fi
exec "$PYTHON" -m pytest -q -p no:cacheprovider -o addopts="" tests "$@"
