"""Queue functions run in child processes (importable by spawn children)."""
import time

import shmstore


def producer(store_name, queue, pid, n):
    with shmstore.Store(store_name, create=False) as s:
        q = s.queue(queue, create=False)
        for i in range(n):
            q.push((pid, i), timeout=60)


def consumer(store_name, queue, results):
    """Pops until a None sentinel; checks FIFO order per producer; reports what it got."""
    got, last = [], {}
    with shmstore.Store(store_name, create=False) as s:
        q = s.queue(queue, create=False)
        while True:
            x = q.pop(timeout=60)
            if x is None:
                break
            p, i = x
            assert last.get(p, -1) < i, (p, i, last.get(p))
            last[p] = i
            got.append((p, i))
    results.put(got)


def hold_views(store_name, queue, ready):
    s = shmstore.Store(store_name, create=False)
    q = s.queue(queue, create=False)
    held = [q.pop(copy=False), q.pop(copy=False), q.read(2, copy=False)]
    ready.set()
    while held:
        time.sleep(1)
