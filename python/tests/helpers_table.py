"""Table functions run in child processes (importable by spawn children)."""
import numpy as np

import shmstore

FIELDS = {"tag": "u8", "data": ("u1", (256,)), "sum": "u8"}


def record_batch(tags):
    """Checksummed records: data and sum follow from the tag, so a torn row shows."""
    tags = np.asarray(tags, np.uint64)
    data = ((tags[:, None] * np.uint64(2654435761) + np.arange(256, dtype=np.uint64))
            % np.uint64(251)).astype(np.uint8)
    return {"tag": tags, "data": data, "sum": tags * np.uint64(3) + np.uint64(7)}


def whole(batch):
    want = record_batch(batch["tag"])
    return bool((want["data"] == batch["data"]).all() and (want["sum"] == batch["sum"]).all())


def writer(store_name, table, wid, n, batch=10):
    with shmstore.Store(store_name, create=False) as s:
        t = s.table(table, create=False)
        for i in range(0, n, batch):
            t.append(record_batch([(wid << 32) | (i + j) for j in range(batch)]))


def writer_pickled(t, wid, n, batch=10):
    for i in range(0, n, batch):
        t.append(record_batch([(wid << 32) | (i + j) for j in range(batch)]))


def sampler(store_name, table, stop, results):
    torn = bad = drawn = 0
    with shmstore.Store(store_name, create=False) as s:
        t = s.table(table, create=False)
        while not stop.is_set():
            if len(t) == 0:
                continue
            b = t.sample(32)
            total = t.total
            torn += not whole(b)
            bad += int((b["index"] >= total).sum())
            drawn += 32
    results.put((torn, bad, drawn))
