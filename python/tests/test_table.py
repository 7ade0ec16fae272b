"""shmstore.Table: the native API, its errors, and many processes (fork, spawn, programs)."""
import multiprocessing as mp
import pickle
import random
import subprocess
import sys
import threading

import numpy as np
import pytest

import shmstore

import helpers_table as ht

SEED_FIELDS = {"actor_id": "i4", "step_number": "i4", "state": ("u1", (4, 84, 84)),
               "action": "i4", "reward": "f4", "done": "?"}


def seed_record(i):
    return {"actor_id": i % 7, "step_number": i, "state": np.full((4, 84, 84), i % 256, np.uint8),
            "action": -i, "reward": i * 0.5, "done": i % 2 == 0}


# ---- the API ----------------------------------------------------------------------------

def test_create_open_schema(store):
    t = store.table("r", fields=SEED_FIELDS, capacity=100)
    assert isinstance(t, shmstore.Table) and t.name == "r"
    assert t.capacity == 100 and t.total == 0 and len(t) == 0 and not t.prioritized
    assert list(t.fields) == list(SEED_FIELDS)
    assert t.fields["state"] == (np.dtype(np.uint8), (4, 84, 84))
    assert t.fields["done"] == (np.dtype(bool), ())
    info = t.info()
    assert info["kind"] == "table" and info["capacity"] == 100 and info["fields"] == 6
    assert info["record_size"] == 4 * 4 + 4 * 84 * 84 + 1
    # Opened again: by name only, or with the same schema; another schema is refused.
    assert store.table("r").fields == t.fields
    assert store.table("r", fields=SEED_FIELDS, capacity=100).capacity == 100
    with pytest.raises(ValueError, match="another schema"):
        store.table("r", fields={"x": "f8"}, capacity=100)
    with pytest.raises(FileExistsError):
        store.table("r", fields=SEED_FIELDS, capacity=100, exclusive=True)
    with pytest.raises(shmstore.NotFoundError):
        store.table("nope")
    with pytest.raises(shmstore.NotFoundError):
        store.table("nope2", fields=SEED_FIELDS, capacity=10, create=False)
    assert "Table" in repr(t)
    t2 = shmstore.Table(store, "r")
    assert t2.capacity == 100
    t.close()
    t.close()
    assert t.closed
    with pytest.raises(ValueError, match="closed"):
        len(t)


def test_bad_schema_and_capacity(store):
    stat0 = store.stat()
    for fields in [{}, {"a": object}, {"a": ("u1", (0,))}, {"a": ("u1", (1,) * 9)},
                   {"": "f8"}, {"x" * 64: "f8"}, {"a": "f8", 1: "f8"}, [("a", "f8")]]:
        with pytest.raises((ValueError, TypeError)):
            store.table("bad", fields=fields, capacity=10)
    with pytest.raises(ValueError):
        store.table("bad", fields={"a": "f8"})                 # no capacity
    with pytest.raises(ValueError):
        store.table("bad", fields={"a": "f8"}, capacity=0)
    s2 = shmstore.Store(store.name + "_small", capacity=8 << 20)
    try:
        with pytest.raises(MemoryError):
            s2.table("big", fields={"frame": ("u1", (4, 84, 84))}, capacity=1000)  # 28 MB
        assert s2.stat()["n_objects"] == 0
    finally:
        s2.close()
        shmstore.unlink(store.name + "_small")
    assert store.stat()["n_objects"] == stat0["n_objects"]
    store["v"] = 1
    with pytest.raises(TypeError):
        store.table("v", fields={"a": "f8"}, capacity=4)


def test_append_get_slices_write(store):
    t = store.table("r", fields=SEED_FIELDS, capacity=8)
    assert t.append(seed_record(0)) == 0
    batch = {k: np.stack([np.asarray(seed_record(i)[k]) for i in range(1, 4)])
             for k in SEED_FIELDS}
    batch["reward"] = batch["reward"].astype(np.float32)
    batch["actor_id"] = batch["actor_id"].astype(np.int32)
    batch["step_number"] = batch["step_number"].astype(np.int32)
    batch["action"] = batch["action"].astype(np.int32)
    assert t.append(batch) == 1
    assert t.total == 4 and len(t) == 4
    r = t[2]
    assert r["step_number"] == 2 and r["action"] == -2 and r["reward"] == 1.0
    assert r["done"] and r["state"].shape == (4, 84, 84) and (r["state"] == 2).all()
    assert t[-1]["step_number"] == 3
    s = t[1:3]
    assert list(s["step_number"]) == [1, 2] and s["state"].shape == (2, 4, 84, 84)
    assert list(t[:]["step_number"]) == [0, 1, 2, 3]
    assert list(t[::2]["step_number"]) == [0, 2]
    g = t.gather([3, 0, 0, -1])
    assert list(g["step_number"]) == [3, 0, 0, 3] and list(g["index"]) == [3, 0, 0, 3]
    t[1] = seed_record(77)
    assert t[1]["step_number"] == 77 and (t[1]["state"] == 77).all()
    # A ring: the oldest records are overwritten.
    for i in range(4, 20):
        t.append(seed_record(i))
    assert t.total == 20 and len(t) == 8
    assert list(t[:]["step_number"]) == list(range(12, 20))
    with pytest.raises(IndexError):
        t[11]
    with pytest.raises(IndexError):
        t[20]
    with pytest.raises(IndexError):
        t[-21]
    with pytest.raises(IndexError):
        t[5] = seed_record(5)
    with pytest.raises(IndexError):
        t.gather([12, 3])


def test_bad_records_write_nothing(store):
    t = store.table("r", fields=SEED_FIELDS, capacity=8)
    t.append(seed_record(0))
    good = seed_record(1)
    bad = [
        {k: v for k, v in good.items() if k != "state"},                 # a missing field
        dict(good, extra=1),                                             # an unknown field
        dict(good, state=np.zeros((4, 84, 84), np.float32)),             # wrong dtype
        dict(good, state=np.zeros((4, 84), np.uint8)),                   # wrong shape
        dict(good, state=np.zeros((2, 4, 84, 84), np.uint8)),            # batch of 2 vs 1
        dict(good, action="x"),                                          # not a number
        [good],                                                          # not a dict
    ]
    for rec in bad:
        with pytest.raises((ValueError, TypeError, shmstore.LayoutError)):
            t.append(rec)
    with pytest.raises((ValueError, shmstore.LayoutError)):
        t[0] = {k: np.stack([np.asarray(good[k])] * 2) for k in good}   # a batch in place
    with pytest.raises(TypeError):
        del t[0]
    assert t.total == 1 and t[0]["step_number"] == 0


def test_sample_uniform(store):
    t = store.table("r", fields=ht.FIELDS, capacity=16)
    with pytest.raises(IndexError):
        t.sample(4)
    t.append(ht.record_batch(range(3)))
    b = t.sample(100, rng=1)                           # more than held: with replacement
    assert b["tag"].shape == (100,) and b["data"].shape == (100, 256)
    assert set(b["index"]) <= {0, 1, 2} and ht.whole(b)
    assert (b["tag"] == b["index"]).all()
    assert (t.sample(50, rng=7)["index"] == t.sample(50, rng=7)["index"]).all()
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    assert (t.sample(20, rng=g1)["index"] == t.sample(20, rng=g2)["index"]).all()
    t.sample(5, rng=random.Random(1))
    with pytest.raises(TypeError):
        t.sample(5, rng="x")
    with pytest.raises(ValueError):
        t.sample(5, prioritized=True)                   # not a prioritized table
    assert t.sample(0)["tag"].shape == (0,)
    t.append(ht.record_batch(range(100, 116)))
    counts = np.zeros(16)
    for i in range(200):
        idx = t.sample(64, rng=i)["index"]
        assert ((idx >= 3) & (idx < 19)).all()
        np.add.at(counts, idx - 3, 1)
    e = 200 * 64 / 16
    assert ((counts - e) ** 2 / e).sum() < 40          # chi-square, 15 dof, fixed seeds


def test_sample_prioritized(store):
    t = store.table("p", fields={"x": "i8"}, capacity=4, prioritized=True)
    assert t.prioritized and t.priority_max > 1e3
    t.append({"x": np.arange(4)})
    t.set_priorities([0, 1, 2, 3], [1.0, 0.0, 2.0, 5.0])
    n = 20000
    b = t.sample(n, prioritized=True, rng=11)
    freq = np.bincount(b["index"].astype(np.int64), minlength=4) / n
    p = np.array([1, 0, 2, 5]) / 8
    assert np.allclose(b["probability"], p[b["index"].astype(np.int64)])
    sd = np.sqrt(p * (1 - p) / n)
    assert (np.abs(freq - p) <= 6 * sd + 1e-12).all() and freq[1] == 0
    with pytest.raises(ValueError):
        t.set_priorities([0], [-1.0])
    with pytest.raises(ValueError):
        t.set_priorities([0, 1], [1.0])
    t.set_priorities([99], [1.0])                        # not held: skipped


def test_delete_and_stale(store):
    t = store.table("r", fields=ht.FIELDS, capacity=4)
    t.append(ht.record_batch([1]))
    del store["r"]
    with pytest.raises(shmstore.StaleError):
        t.append(ht.record_batch([2]))
    with pytest.raises(shmstore.NotFoundError):
        store.table("r")


def test_threads_append_and_sample(store):
    t = store.table("r", fields=ht.FIELDS, capacity=500)
    stop = threading.Event()
    errors = []

    def writer(w):
        for i in range(0, 2000, 20):
            t.append(ht.record_batch([(w << 32) | (i + j) for j in range(20)]))

    def sampler():
        while not stop.is_set():
            if len(t):
                b = t.sample(64)
                if not ht.whole(b):
                    errors.append("torn")
    ws = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    ss = [threading.Thread(target=sampler) for _ in range(2)]
    for x in ss + ws:
        x.start()
    for x in ws:
        x.join()
    stop.set()
    for x in ss:
        x.join()
    assert not errors and t.total == 8000 and len(t) == 500


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_processes(store, store_name, method):
    t = store.table("r", fields=ht.FIELDS, capacity=1000)
    ctx = mp.get_context(method)
    stop, results = ctx.Event(), ctx.Queue()
    samplers = [ctx.Process(target=ht.sampler, args=(store_name, "r", stop, results))
                for _ in range(2)]
    writers = [ctx.Process(target=ht.writer, args=(store_name, "r", w, 2000)) for w in range(3)]
    writers.append(ctx.Process(target=ht.writer_pickled, args=(t, 3, 2000)))  # a pickled Table
    for p in samplers + writers:
        p.start()
    for p in writers:
        p.join(120)
        assert p.exitcode == 0
    stop.set()
    for _ in samplers:
        torn, bad, drawn = results.get(timeout=120)
        assert torn == 0 and bad == 0
    for p in samplers:
        p.join(60)
        assert p.exitcode == 0
    assert t.total == 8000 and len(t) == 1000
    assert ht.whole(t[:])


def test_fork_child_uses_inherited_table(store):
    t = store.table("r", fields=ht.FIELDS, capacity=10)
    t.append(ht.record_batch([5]))
    ctx = mp.get_context("fork")
    p = ctx.Process(target=lambda: t.append(ht.record_batch([6])))
    p.start()
    p.join(60)
    assert p.exitcode == 0 and t.total == 2 and t[1]["tag"] == 6


def test_independent_program(store, store_name):
    t = store.table("r", fields=ht.FIELDS, capacity=10)
    code = ("import sys, shmstore, helpers_table as ht\n"
            "s = shmstore.Store(sys.argv[1], create=False)\n"
            "t = s.table('r')\n"
            "t.append(ht.record_batch([41, 42]))\n"
            "print(t.total)\n")
    out = subprocess.check_output([sys.executable, "-c", code, store_name])
    assert out.strip() == b"2" and list(t[:]["tag"]) == [41, 42]
    assert pickle.loads(pickle.dumps(t)).total == 2


def test_advance_and_slice_assignment(store):
    t = store.table("r", fields=ht.FIELDS, capacity=10)
    assert t.advance(10) == 0 and t.total == 10
    with pytest.raises(IndexError):
        t[3]                                              # not written yet
    t[3] = {k: v[0] for k, v in ht.record_batch([33]).items()}
    assert t[3]["tag"] == 33
    t[5:8] = ht.record_batch([50, 60, 70])
    assert list(t[5:8]["tag"]) == [50, 60, 70] and ht.whole(t[5:8])
    t[8:] = ht.record_batch([80, 90])
    assert list(t[8:10]["tag"]) == [80, 90]
    with pytest.raises(ValueError):
        t[5:7] = ht.record_batch([1, 2, 3])               # a batch of another length
    with pytest.raises(IndexError):
        t[9:] = ht.record_batch([1, 2])                   # past the last index
    with pytest.raises(ValueError):
        t.advance(0)


def test_len_counts_valid_records_not_tickets(store):
    """len(t) is the records there: indices taken by advance() (or an append not yet
    written) do not count until they are written."""
    t = store.table("r", fields=ht.FIELDS, capacity=10)
    t.advance(4)
    assert t.total == 4 and len(t) == 0
    t[2] = {k: v[0] for k, v in ht.record_batch([2]).items()}
    assert len(t) == 1
    t[2] = {k: v[0] for k, v in ht.record_batch([22]).items()}   # in place: still one
    assert len(t) == 1
    t.append(ht.record_batch([4, 5]))
    assert t.total == 6 and len(t) == 3
    t.advance(10)                             # a lap of tickets: the records stay
    assert t.total == 16 and len(t) == 3
    t.append(ht.record_batch(range(16, 26)))  # a whole lap written
    assert len(t) == 10 and t.info()["count"] == 10


ROW_FIELDS = {"a": "i8", "s": ("u1", (2, 3)), "b": "f8", "s_none": "?", "pad": "u2"}
ITEMS = ("a", "s", "b")
FLAGS = {"s": "s_none"}


def test_rows_round_trip(store):
    from collections import namedtuple
    Row = namedtuple("Row", "a s b")
    t = store.table("rows", fields=ROW_FIELDS, capacity=8)
    t.advance(8)
    s1 = np.arange(6, dtype=np.uint8).reshape(2, 3)
    t.write_rows(2, [Row(-5, s1, 0.25), (7, None, 1), [1 << 40, s1.tolist(), -2.5]],
                 ITEMS, FLAGS)
    assert len(t) == 3
    r = t[3]
    assert r["s_none"] and not r["s"].any() and r["a"] == 7 and r["pad"] == 0
    assert t[2]["s_none"] is False and (t[2]["s"] == s1).all()
    one = t.read_rows(2, ITEMS, FLAGS, Row)
    assert type(one) is Row and one.a == -5 and one.b == 0.25 and (one.s == s1).all()
    rows = t.read_rows([4, 3], items=ITEMS, flags=FLAGS)
    assert rows[0][0] == 1 << 40 and rows[0][2] == -2.5 and rows[1][1] is None
    assert all(type(x) is tuple for x in rows)
    assert t.read_rows([3], items=("b", "a"), row_type=lambda b, a: (a, b)) == [(7, 1.0)]
    t.write_rows([6, 0], [(1, s1, 2.0), (3, s1, 4.0)], ITEMS, FLAGS)   # any indices
    assert t[0]["a"] == 3 and t[6]["a"] == 1
    rows = t.sample_rows(50, ITEMS, FLAGS, Row, rng=3)
    assert len(rows) == 50 and {x.a for x in rows} <= {-5, 7, 1 << 40, 1, 3}
    assert all((x.s is None) == (x.a == 7) for x in rows)
    t.write_rows(2, [(0, np.zeros((2, 3), np.uint8), 0.0, True, 9)])  # items=None: all fields
    assert t[2]["pad"] == 9 and t[2]["s_none"] is True


def test_rows_bad_input_writes_nothing(store):
    t = store.table("rows", fields=ROW_FIELDS, capacity=8)
    t.advance(8)
    good = (1, np.zeros((2, 3), np.uint8), 1.0)
    t.write_rows(0, [good], ITEMS, FLAGS)
    bad_rows = [
        (ValueError, [good, (1, 2)]),                                   # too few items
        (shmstore.LayoutError, [good, (1, np.zeros((3, 2), np.uint8), 1.0)]),  # shape
        (shmstore.LayoutError, [good, (1, np.zeros((2, 3), np.float32), 1.0)]),  # dtype
        (OverflowError, [good, (1 << 70, None, 1.0)]),
        (ValueError, [good, (1, None, "x")]),
    ]
    for exc, rows in bad_rows:
        with pytest.raises(exc):
            t.write_rows(1, rows, ITEMS, FLAGS)
        assert len(t) == 1
        with pytest.raises(IndexError):
            t[1]                                                        # nothing written
    with pytest.raises(ValueError):
        t.write_rows(0, [good], ("a", "nope", "b"), FLAGS)
    with pytest.raises(ValueError):
        t.write_rows(0, [good], ("a", "s", "a"))                        # a field twice
    with pytest.raises(ValueError):
        t.write_rows(0, [good], ITEMS, {"s": "a"})                      # not a bool flag
    with pytest.raises(ValueError):
        t.write_rows([0, 1], [good], ITEMS, FLAGS)                      # 2 indices, 1 row
    with pytest.raises(IndexError):
        t.write_rows(20, [good], ITEMS, FLAGS)                          # not held
    with pytest.raises(IndexError):
        t.read_rows(5, ITEMS, FLAGS)                                    # not written
    t.write_rows(0, [], ITEMS, FLAGS)                                   # nothing to do


def test_numpy_scalars_and_arrays_take_the_fast_check(store):
    """Values of a record given as numpy scalars or arrays of the field's dtype are taken
    as they are; other dtypes are converted (scalars) or refused (arrays), as before."""
    t = store.table("r", fields=SEED_FIELDS, capacity=4)
    rec = {"actor_id": np.int32(-3), "step_number": np.int64(5), "state": np.ones((4, 84, 84), np.uint8),
           "action": np.uint8(2), "reward": np.float32(0.5), "done": np.bool_(True)}
    t.append(rec)
    r = t[0]
    assert (r["actor_id"], r["step_number"], r["action"], r["reward"], r["done"]) == (-3, 5, 2, 0.5, True)
    rec["state"] = np.ones((4, 84, 84), np.int16)
    with pytest.raises(shmstore.LayoutError):
        t.append(rec)
    rec["state"] = np.ones((8, 84, 84), np.uint8)[::2]                 # not contiguous: copied
    t.append(rec)
    assert (t[1]["state"] == 1).all() and len(t) == 2


def test_reads_never_reuse_arrays_someone_holds(store):
    """Reads reuse their output arrays only once nothing else refers to them."""
    t = store.table("r", fields=ht.FIELDS, capacity=64)
    t.append(ht.record_batch(range(64)))
    b1 = t.sample(8, rng=1)
    keep = b1["data"].copy()
    view = t.sample(8, rng=2)["data"][3]          # a view keeps its base alive
    vkeep = view.copy()
    for i in range(20):
        b = t.sample(8, rng=10 + i)
        assert b["data"] is not b1["data"]
    assert (b1["data"] == keep).all() and (view == vkeep).all()
    r = t[5]
    assert isinstance(r["tag"], int) and r["tag"] == 5
    mv = memoryview(t.gather([1, 2])["data"])     # a memoryview holds the array too
    copy = bytes(mv)
    t.gather([3, 4])
    assert bytes(mv) == copy
