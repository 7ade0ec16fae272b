"""Shared fixtures: unique store names per test, removed in teardown; the in-place build
of the extension (python/) first on sys.path."""
import os
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)
if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
# Children started with spawn/forkserver or as programs find the package too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [PKG_ROOT, HERE] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

import pytest  # noqa: E402

import shmstore  # noqa: E402

# The compat module's default store, unique for this session.
os.environ["SHMSTORE_COMPAT_STORE"] = f"t_compat_{os.getpid()}"
# The ezmsg drop-in's store, unique for this session too.
os.environ["SHMSTORE_EZMSG_STORE"] = f"t_ezmsg_{os.getpid()}"


def unique(prefix="t_py"):
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def store_name():
    name = unique()
    yield name
    try:
        shmstore.unlink(name)
    except FileNotFoundError:
        pass


@pytest.fixture
def store(store_name):
    s = shmstore.Store(store_name)
    yield s
    if not s.closed:
        report = s.check()
        s.close()
        assert report == "", report


@pytest.fixture(scope="session", autouse=True)
def _compat_store_cleanup():
    yield
    for var in ("SHMSTORE_COMPAT_STORE", "SHMSTORE_EZMSG_STORE"):
        try:
            shmstore.unlink(os.environ[var])
        except FileNotFoundError:
            pass
