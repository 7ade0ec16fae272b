"""Build shmstore's Python package: the C extension shmstore._shmstore, linked with the
static library libshmstore.a (built by CMake; SHMSTORE_LIB_DIR, default ../build).

    SHMSTORE_LIB_DIR=/path/to/build /usr/bin/python3 setup.py build_ext --inplace
    python3 -m venv --system-site-packages v && v/bin/pip install --no-build-isolation ./python

Only Debian's python3-setuptools is needed. numpy is a runtime dependency; when it is
there at build time too, its headers are used for the few views made through numpy's C
API (src/npapi.c; SHMSTORE_NUMPY_API=0 builds without them, and the extension then
slices as Python does).
"""
import glob
import os

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def lib_dir():
    d = os.environ.get("SHMSTORE_LIB_DIR")
    if d:
        return os.path.abspath(d)
    for cand in (os.path.join(ROOT, "build"), os.path.join(HERE, "build-lib")):
        if os.path.exists(os.path.join(cand, "libshmstore.a")):
            return cand
    return os.path.join(ROOT, "build")


LIB_DIR = lib_dir()
STATIC = os.path.join(LIB_DIR, "libshmstore.a")
if not os.path.exists(STATIC) and "egg_info" not in os.sys.argv and "dist_info" not in os.sys.argv:
    raise SystemExit(
        f"shmstore: {STATIC} not found. Build the C library first "
        f"(cmake -S {ROOT} -B {ROOT}/build && cmake --build {ROOT}/build --target shmstore_static) "
        f"or point SHMSTORE_LIB_DIR at the directory holding libshmstore.a."
    )

# Sources relative to setup.py: pip builds from a copy of this directory.
sources = sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, "src", "*.c")))
include = os.environ.get("SHMSTORE_INCLUDE_DIR", os.path.join(ROOT, "include"))

# Libraries libshmstore.a itself needs (libhdf5 when built with it), listed by CMake.
_libs_file = os.path.join(LIB_DIR, "libshmstore.libs")
extra_link = []
if os.path.exists(_libs_file):
    with open(_libs_file) as f:
        extra_link = [ln.strip() for ln in f if ln.strip()]


def numpy_api():
    """numpy's include directory and the macro that turns src/npapi.c on, if numpy is here."""
    if os.environ.get("SHMSTORE_NUMPY_API", "1") == "0":
        return [], []
    try:
        import numpy
    except ImportError:
        return [], []
    return [numpy.get_include()], [("SHM_NUMPY_API", "1")]


np_include, np_macros = numpy_api()

ext = Extension(
    "shmstore._shmstore",
    sources=sources,
    include_dirs=[include] + np_include,
    define_macros=np_macros,
    extra_objects=[STATIC],
    libraries=["pthread"],
    extra_link_args=extra_link,
    extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Werror",
                        "-fvisibility=hidden", "-D_POSIX_C_SOURCE=200809L"],
    depends=[os.path.join("src", "ext.h"), STATIC],
)

setup(
    name="shmstore",
    version="0.1.0",
    description="Share data between processes through shared memory (C core, no server)",
    packages=["shmstore", "shmstore.compat"],
    package_data={"shmstore": ["py.typed", "*.pyi", "compat/*.pyi"]},
    ext_modules=[ext],
    python_requires=">=3.9",
    entry_points={"console_scripts": [
        "cute-shm-hdf5 = shmstore.compat.cute_shm:main_hdf5",
        "cute-shm-list = shmstore.compat.cute_shm:main_list",
        "cute-shm-unlink = shmstore.compat.cute_shm:main_unlink",
    ]},
    zip_safe=False,
)
