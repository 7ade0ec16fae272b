"""Make the HDF5 files the HDF5 tests load (with h5py, as users make them).

usage: make_h5.py OUT.h5 [all|vlen|big MiB|deep]
  all   nested groups, every numeric dtype, bool, complex, fixed strings, compound,
        scalar datasets, zero-size, chunked + gzip, attributes of every kind
  vlen  one dataset of variable-length strings (unsupported) next to a good one
  big   one contiguous float64 dataset of MiB mebibytes (arange), and a chunked+gzip one
  many  64 datasets of 256 KiB, every other one chunked + gzip (the kill soak)
  deep  a path too long once joined with a prefix
Values are deterministic (arange-based) so that a reader can check them without h5py.
"""
import sys

import h5py
import numpy as np


def all_types(f):
    f.attrs["title"] = "test file"
    f.attrs["version"] = np.int32(3)
    f.attrs["scale"] = 0.5
    f.attrs["flags"] = np.array([1, 2, 3], dtype=np.int16)
    f.attrs["names"] = np.array([b"x", b"yy"])
    f.attrs["ok"] = np.bool_(True)
    f.attrs["z"] = np.complex128(1 + 2j)
    f.attrs["u64"] = np.uint64(2**40)
    f.attrs["vstr_list"] = ["a", "bcd"]
    for dt in ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]:
        f.create_dataset(f"num/{dt}", data=(np.arange(24) % 100).reshape(2, 3, 4).astype(dt))
    f.create_dataset("num/longdouble", data=np.arange(5, dtype=np.longdouble) / 3)
    f.create_dataset("bool", data=np.array([True, False, True]))
    f.create_dataset("strings", data=np.array([b"alpha", b"be", b""], dtype="S5"))
    rec = np.zeros(4, dtype=[("id", "<i4"), ("x", "<f8"), ("tag", "S3")])
    rec["id"] = [1, 2, 3, 4]
    rec["x"] = [0.5, 1.5, 2.5, 3.5]
    rec["tag"] = [b"a", b"bb", b"ccc", b""]
    f.create_dataset("records", data=rec)
    f.create_dataset("scalar_int", data=np.int64(42))
    f.create_dataset("scalar_float", data=np.float64(2.5))
    f.create_dataset("scalar_str", data=np.bytes_(b"hello"))
    f.create_dataset("empty", data=np.zeros((0, 3), dtype=np.float32))
    f.create_dataset("subarray", data=np.arange(12, dtype=np.int32).reshape(3, 4), dtype=np.int32)
    g = f.create_group("a/b/c")
    g.attrs["depth"] = 3
    d = g.create_dataset("chunked", data=np.arange(100000, dtype=np.float64),
                         chunks=(1000,), compression="gzip", shuffle=True)
    d.attrs["unit"] = "m/s"
    d.attrs["rate"] = np.float32(100.0)
    d.attrs["shape_hint"] = np.arange(6, dtype=np.float64).reshape(2, 3)


def main():
    out, what = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "all"
    with h5py.File(out, "w") as f:
        if what == "all":
            all_types(f)
        elif what == "vlen":
            f.create_dataset("good", data=np.arange(10))
            f.create_dataset("bad/vlen", data=["a", "bb"], dtype=h5py.string_dtype())
        elif what == "big":
            n = int(sys.argv[3]) * (1 << 20) // 8
            f.create_dataset("big", data=np.arange(n, dtype=np.float64))
            f.create_dataset("big_gzip", data=np.arange(n // 4, dtype=np.float64),
                             chunks=(1 << 16,), compression="gzip")
        elif what == "many":  # 64 datasets of 256 KiB (half of them chunked + gzip)
            for i in range(64):
                kw = {"chunks": (4096,), "compression": "gzip"} if i % 2 else {}
                f.create_dataset(f"g{i % 4}/d{i}", data=np.full(32768, i, dtype=np.float64), **kw)
        elif what == "deep":
            f.create_dataset("/".join(["g" * 50] * 4) + "/data", data=np.arange(3))


if __name__ == "__main__":
    main()
