#!/bin/sh
# Check the README's install recipe for machines without PyPI, from a clean copy of the
# package: a venv that sees Debian's numpy, then pip install --no-build-isolation.
# Built with SHMSTORE_NUMPY_API=0, so that the extension's path without numpy's C API
# (ring views by slicing; the in-tree build uses the API) is exercised too.
#   sh python/tests/test_install.sh LIB_DIR      (LIB_DIR holds libshmstore.a)
set -eu
HERE=$(cd "$(dirname "$0")/.." && pwd)
LIB_DIR=$1
PYTHON=${PYTHON:-/usr/bin/python3}
TMP=$(mktemp -d /tmp/shmstore-install-XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM
# A clean copy: no in-place extension, no build/ or egg-info from earlier builds.
mkdir "$TMP/src"
(cd "$HERE" && tar cf - --exclude='*.so' --exclude=build --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=.pytest_cache .) | (cd "$TMP/src" && tar xf -)
"$PYTHON" -m venv --system-site-packages "$TMP/v"
SHMSTORE_NUMPY_API=0 SHMSTORE_LIB_DIR=$LIB_DIR SHMSTORE_INCLUDE_DIR=$(dirname "$HERE")/include "$TMP/v/bin/pip" install -q --no-build-isolation --no-index "$TMP/src"
cd "$TMP"
SHM_VENV="$TMP/v" "$TMP/v/bin/python" - <<'PY'
import os, numpy as np, shmstore
name = "t_install_%d" % os.getpid()
with shmstore.Store(name, create=True, capacity=16 << 20) as st:
    st.put("a", np.arange(12, dtype="<f4").reshape(3, 4))
    assert st.get("a").sum() == 66.0
    assert shmstore.__file__.startswith(os.environ["SHM_VENV"]), shmstore.__file__  # not the source tree
    assert shmstore._shmstore._numpy_api == 0  # SHMSTORE_NUMPY_API=0 above
    r = st.ring("r", dtype="<f4", frame_shape=(2,), capacity=4)
    r.write(np.arange(12, dtype="<f4").reshape(6, 2))  # wraps: frames 2..5 held
    pieces, cur, lost = r.view_since(2)
    assert (cur, lost) == (6, 0) and len(pieces) == 2, (cur, lost, len(pieces))
    assert np.concatenate(pieces).ravel().tolist() == list(range(4, 12))
    assert not pieces[0].flags.writeable
    del pieces
shmstore.unlink(name)
print("install check: 1 passed, 0 failed")
PY
