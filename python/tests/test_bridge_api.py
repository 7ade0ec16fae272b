"""shmstore.bridge from Python: serve and mirror in threads of this process over
loopback, every kind, keys, errors. (The network tests across namespaces, with cut
links and killed bridges, are test_bridge.py.)"""
import os
import threading
import time

import numpy as np
import pytest

import shmstore
import shmstore.bridge as br

pytestmark = pytest.mark.skipif(not hasattr(shmstore._shmstore, "Bridge"), reason="no bridge")


def _wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = pred()
        if r:
            return r
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture
def stores():
    names = [f"brpy{os.getpid()}_{i}" for i in range(2)]
    ss = [shmstore.Store(n, create=True, capacity=64 << 20) for n in names]
    yield ss
    for s, n in zip(ss, names):
        s.close()
        try:
            os.unlink(f"/dev/shm/shmstore.{n}")
        except FileNotFoundError:
            pass


def _get(store, name):
    try:
        return store.get(name)
    except KeyError:
        return None


def test_every_kind(stores):
    src, dst = stores
    src.put("v", np.arange(10.0))
    q = src.queue("q", capacity=16)
    r = src.ring("r", dtype=np.int32, frame_shape=(3,), capacity=50)
    t = src.table("t", fields={"a": np.int64, "img": (np.uint8, (4, 4))}, capacity=100)
    with br.serve(src, "tcp://127.0.0.1:0") as s, br.mirror(dst, s.endpoint, prefix="far/") as m:
        _wait(lambda: _get(dst, "far/v") is not None)
        np.testing.assert_array_equal(dst.get("far/v"), np.arange(10.0))
        src.put("v", {"nested": [1, "two", 3.0]})
        _wait(lambda: isinstance(_get(dst, "far/v"), dict))
        assert dst.get("far/v") == {"nested": [1, "two", 3.0]}
        # 100 entries through 16-entry queues, popped on the far side meanwhile.
        pusher = threading.Thread(target=lambda: [q.push({"i": i, "a": np.full(8, i)}, timeout=10)
                                                  for i in range(100)])
        pusher.start()
        fq = _wait(lambda: "far/q" in dst.names() and dst.queue("far/q", create=False))
        got = []
        try:
            for _ in range(100):
                got.append(fq.pop(timeout=10))
        except TimeoutError:
            print("stuck after", len(got), s.stats(), m.stats())
            os.system(f"/work/wt11/build/cli/shmstore info {src.name}/q {dst.name}/far/q")
            raise
        pusher.join()
        assert [g["i"] for g in got] == list(range(100))
        assert all((g["a"] == g["i"]).all() for g in got)
        r.write(np.arange(60 * 3, dtype=np.int32).reshape(60, 3))
        fr = _wait(lambda: "far/r" in dst.names() and dst.ring("far/r", create=False))
        _wait(lambda: fr.total == 60)
        frames, cur, lost = fr.read_since(0)
        assert lost == 10 and cur == 60  # the source holds 50: the mirror got those
        np.testing.assert_array_equal(frames, np.arange(10 * 3, 60 * 3, dtype=np.int32).reshape(50, 3))
        for i in range(20):
            t.append({"a": i, "img": np.full((4, 4), i, np.uint8)})
        ft = _wait(lambda: "far/t" in dst.names() and dst.table("far/t", create=False))
        _wait(lambda: len(ft) == 20)
        assert [int(ft[i]["a"]) for i in range(20)] == list(range(20))
        st = s.stats()
        assert st["entries_acked"] == 100 and st["bad_messages"] == 0 and st["peers"] == 1
        assert m.stats()["frames"] == 50
    assert len(q) == 0


def test_keys_and_refusal(stores, tmp_path):
    src, dst = stores
    src.put("secret", b"s3cr3t")
    br.keygen(tmp_path / "srv")
    br.keygen(tmp_path / "mir")
    br.keygen(tmp_path / "other")
    with pytest.raises(FileExistsError):
        br.keygen(tmp_path / "srv")
    with br.serve(src, "tcp://127.0.0.1:0", key=tmp_path / "srv", allow=[tmp_path / "mir.pub"]) as s:
        with br.mirror(dst, s.endpoint, prefix="ok/", key=tmp_path / "mir", server_key=tmp_path / "srv.pub"):
            _wait(lambda: _get(dst, "ok/secret") == b"s3cr3t")
        bad = br.mirror(dst, s.endpoint, prefix="bad/", server_key=tmp_path / "other.pub")
        with pytest.raises(PermissionError):
            _wait(lambda: not bad.running)
            bad.stop()
        no = br.mirror(dst, s.endpoint, prefix="no/", key=tmp_path / "other", server_key=tmp_path / "srv.pub")
        _wait(lambda: s.stats()["refused"] > 0)
        with pytest.raises(PermissionError):  # the server's refusal ends the mirror too
            _wait(lambda: not no.running)
            no.stop()
        assert _get(dst, "no/secret") is None


def test_one_mirror_two_servers(stores):
    a, dst = stores
    bname = f"brpy{os.getpid()}_b"
    b = shmstore.Store(bname, create=True, capacity=16 << 20)
    try:
        a.put("temp", 1.5)
        b.put("temp", 2.5)
        ta = a.table("log", fields={"host": np.int64}, capacity=100)
        tb = b.table("log", fields={"host": np.int64}, capacity=100)
        with br.serve(a, "tcp://127.0.0.1:0") as sa, br.serve(b, "tcp://127.0.0.1:0") as sb:
            # Values under a prefix per server; both tables into one far table ("" prefix
            # for the tables' server objects would collide for values, so filter by glob).
            with br.mirror(dst, [(sa.endpoint, "a/"), (sb.endpoint, "b/")], objects=["temp"]):
                _wait(lambda: _get(dst, "a/temp") == 1.5 and _get(dst, "b/temp") == 2.5)
            with br.mirror(dst, [(sa.endpoint, ""), (sb.endpoint, "")], objects=["log"]) as m:
                _wait(lambda: m.stats()["peers"] == 2)
                time.sleep(0.3)  # both servers know the mirror (its first PING)
                for i in range(10):
                    ta.append({"host": 1})
                    tb.append({"host": 2})
                ft = _wait(lambda: "log" in dst.names() and dst.table("log", create=False))
                _wait(lambda: len(ft) == 20)
                hosts = sorted(int(ft[i]["host"]) for i in range(20))
                assert hosts == [1] * 10 + [2] * 10
    finally:
        b.close()
        os.unlink(f"/dev/shm/shmstore.{bname}")


def test_array_sets_are_not_mirrored(stores):
    src, dst = stores
    src.put_tree("proj", {"a": np.arange(4), "b": {"c": np.ones(3)}})
    src.put("plain", 7)
    with br.serve(src, "tcp://127.0.0.1:0") as s, br.mirror(dst, s.endpoint):
        _wait(lambda: _get(dst, "plain") == 7)
        time.sleep(0.3)  # a rescan or two
        assert s.stats()["objects"] == 1  # the value only: neither the set nor its members
        assert [n for n in dst.names() if n.startswith("proj")] == []


class Opaque:
    pass


def test_no_pickle_crosses(stores):
    src, dst = stores
    src.put("p", Opaque())  # pickled: never sent
    src.put("ok", 1)
    q = src.queue("q")
    q.push({"fine": 1})
    q.push([Opaque()])  # a record holding a pickle
    q.push({"fine": 2})
    with br.serve(src, "tcp://127.0.0.1:0") as s, br.mirror(dst, s.endpoint) as m:
        _wait(lambda: _get(dst, "ok") == 1)
        fq = _wait(lambda: "q" in dst.names() and dst.queue("q", create=False))
        assert fq.pop(timeout=10) == {"fine": 1}
        assert fq.pop(timeout=10) == {"fine": 2}
        _wait(lambda: s.stats()["entries_acked"] == 2)
        assert _get(dst, "p") is None
        assert s.stats()["bad_messages"] == 2 and m.stats()["bad_messages"] == 0
    assert len(q) == 1  # the pickled entry stays in the source queue
    assert isinstance(q.pop(timeout=0)[0], Opaque)


def test_errors(stores):
    src, dst = stores
    with pytest.raises(ValueError):
        br.serve(src, "tcp://0.0.0.0:0")  # not loopback, not public
    with pytest.raises(TypeError):
        br.serve("not a store", "tcp://127.0.0.1:0")
    with pytest.raises(PermissionError):
        br.serve(src, "tcp://127.0.0.1:0", key="/nonexistent/key")
    with br.serve(src, "tcp://127.0.0.1:0") as s:
        with pytest.raises(OSError):
            br.serve(src, s.endpoint)  # in use
