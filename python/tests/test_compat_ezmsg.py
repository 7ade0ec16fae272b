"""shmstore.compat.ezmsg_shmem: the seed's sink and mirror API on rings, with a minimal
AxisArray-like class; a mirror in another process (spawn and an independent program);
one test per seed bug."""
import asyncio
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest

import shmstore
from shmstore.compat import ezmsg_shmem as ezs
from shmstore.compat.ezmsg_shmem import (EZShmMirror, ShMemCircBuff, ShMemCircBuffSettings,
                                         ShMemCircBuffState, ShmemArrMeta, shorten_shmem_name)
import helpers_ring
from helpers_ring import Axis, Msg


def _name():
    return f"ez/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def run(coro):
    return asyncio.run(coro)


def chunk(first, n, n_ch=4, srate=1000.0, dtype=np.float64, time_first=True, key="k"):
    """n frames of the ramp from `first`: frame p, channel j holds p + j / 100."""
    d = (np.arange(first, first + n, dtype=np.float64)[:, None] +
         np.arange(n_ch)[None, :] / 100.0).astype(dtype)
    axes = {"time": Axis(gain=1.0 / srate, offset=first / srate)}
    if time_first:
        return Msg(d, ["time", "ch"], axes, key)
    return Msg(np.ascontiguousarray(d.T), ["ch", "time"], axes, key)


@pytest.fixture
def sink():
    name = _name()
    u = ShMemCircBuff(name, 0.1, axis="time")  # 0.1 s at 1 kHz: 100 frames
    run(u.initialize())
    yield u
    run(u.shutdown())


def test_compat_api_surface():
    s = ShMemCircBuffSettings("x", 2.0)
    assert (s.shmem_name, s.buf_dur, s.conn, s.axis) == ("x", 2.0, None, "time")
    st = ShMemCircBuffState()
    assert st.meta_shmem is None and st.meta_struct is None and st.buffer_arr is None
    assert st.meta_hash == -1
    assert shorten_shmem_name(None) is None
    short = shorten_shmem_name("a/long/name" * 20)
    assert short.startswith("sm_") and len(short) == 23 and short == shorten_shmem_name("a/long/name" * 20)
    assert ezs.to_bytes(True) == b"\x01\x00" and ezs.to_bytes(5) == (5).to_bytes(8, "little")
    m = ShmemArrMeta()
    m.key = "hello"
    assert m.key == "hello"
    u = ShMemCircBuff(settings=s)
    assert u.SETTINGS is s
    for attr in ("initialize", "on_settings", "on_message", "shutdown", "check_continue",
                 "INPUT_SIGNAL", "INPUT_SETTINGS", "SETTINGS", "STATE"):
        assert hasattr(u, attr), attr


def test_compat_sink_and_mirror_roundtrip(sink):
    name = sink.SETTINGS.shmem_name
    m = EZShmMirror(name)
    assert m.connected is False or m.meta.bvalid is False  # no data yet: not valid
    arr, ov = m.auto_view()
    assert arr.size == 0 and not ov
    changes = []
    m.register_change_callback(lambda: changes.append(1))
    run(sink.on_message(chunk(0, 30)))
    arr, ov = m.auto_view()
    assert np.array_equal(arr, chunk(0, 30).data) and not ov
    assert changes == [1] and m.connected
    meta = m.meta
    assert meta.bvalid and meta.dtype == b"d" and meta.srate == 1000.0
    assert meta.ndim == 2 and tuple(meta.shape[:2]) == (100, 4)
    assert (meta.write_index, meta.wrap_counter) == (30, 0) and meta.key == "k"
    assert meta.buffer_generation == 0 and m.write_index == 30
    assert m.buffer.shape == (100, 4)
    # exactly n, once n are there; nothing consumed before
    run(sink.on_message(chunk(30, 5)))
    arr, ov = m.auto_view(10)
    assert arr.shape == (0, 4) and not ov
    run(sink.on_message(chunk(35, 5)))
    arr, ov = m.auto_view(10)
    assert np.array_equal(arr, chunk(30, 10).data)
    # a contiguous read is a zero-copy view of the buffer
    run(sink.on_message(chunk(40, 20)))
    arr, ov = m.auto_view()
    assert np.shares_memory(arr, m.buffer) and np.array_equal(arr, chunk(40, 20).data)
    # the writer's state mirrors the header
    assert sink.STATE.meta_struct.write_index == 60
    m.unregister_change_callback()
    m.disconnect()
    assert not m.connected


def test_compat_conn_progress_strings():
    a, b = mp.Pipe()
    u = ShMemCircBuff(_name(), 0.05, conn=b)
    run(u.initialize())
    run(u.on_message(chunk(0, 3)))
    run(u.shutdown())
    got = []
    try:
        while a.poll():
            got.append(a.recv())
    except EOFError:  # shutdown closed the sink's end
        pass
    assert got[:2] == ["buffer cleanup", "meta cleanup"]
    assert "meta reset" in got and "begin update" in got and "meta updated" in got
    assert "buffer reset" in got and got[-1] == "close"


def test_compat_mirror_follows_generations_and_leaks_nothing(sink):
    """Seed bug: one leaked segment per re-configuration."""
    name = sink.SETTINGS.shmem_name
    store = shmstore.Store(ezs.store_name())
    store["index"] = 0
    m = EZShmMirror(name)
    run(sink.on_message(chunk(0, 10)))
    m.auto_view()
    used = store.stat()["used"]
    changes = []
    m.register_change_callback(lambda: changes.append(m.meta.buffer_generation))
    for k in range(20):  # the channel count changes with every message
        run(sink.on_message(chunk(0, 7, n_ch=2 + k % 3)))
        arr, ov = m.auto_view()
        assert arr.shape == (7, 2 + k % 3) and not ov, k
    assert changes == list(range(1, 21))
    assert store.stat()["used"] <= used + 4096  # old generations freed, none leaked
    m.disconnect()
    store.close()


def test_compat_1d_stream(sink):
    """Seed bug: the mirror crashed on 1-D streams (buffer_arr[t_slice, :])."""
    name = sink.SETTINGS.shmem_name
    m = EZShmMirror(name)
    d = np.arange(25, dtype=np.float32)
    run(sink.on_message(Msg(d, ["time"], {"time": Axis(gain=0.001)})))
    arr, ov = m.auto_view()
    assert arr.shape == (25,) and np.array_equal(arr, d) and not ov
    assert m.meta.ndim == 1 and m.meta.dtype == b"f"


def test_compat_chunk_longer_than_ring(sink):
    """Seed bug: a chunk longer than the buffer raised (shape mismatch)."""
    name = sink.SETTINGS.shmem_name
    m = EZShmMirror(name)
    run(sink.on_message(chunk(0, 1)))
    m.auto_view()
    run(sink.on_message(chunk(1, 350)))  # 350 frames into 100
    arr, ov = m.auto_view()
    assert ov and np.array_equal(arr, chunk(251, 100).data)
    assert m.meta.wrap_counter == 3 and m.meta.write_index == 51


def test_compat_overflow_recovery_exact(sink):
    """Seed bugs: after an overflow it skipped the oldest frame (write_index + 1), and it
    never returned a single new frame (n_available <= 1)."""
    name = sink.SETTINGS.shmem_name
    m = EZShmMirror(name)
    run(sink.on_message(chunk(0, 40)))
    assert len(m.auto_view()[0]) == 40
    run(sink.on_message(chunk(40, 130)))  # laps the mirror: frames 40..69 are gone
    arr, ov = m.auto_view()
    assert ov and len(arr) == 100 and arr[0, 0] == 70.0  # the oldest held, not 71
    run(sink.on_message(chunk(170, 1)))
    arr, ov = m.auto_view()
    assert not ov and arr.shape == (1, 4) and arr[0, 0] == 170.0


def test_compat_reader_exit_removes_nothing(sink):
    """Seed bug: a viewer's exit (resource_tracker) deleted the writer's buffer."""
    name = sink.SETTINGS.shmem_name
    run(sink.on_message(chunk(0, 50)))
    ctx = mp.get_context("spawn")
    res = ctx.Queue()
    p = ctx.Process(target=helpers_ring.mirror_reader, args=(name, 50, res))
    p.start()
    assert res.get(timeout=60) == (50, False)
    p.join(30)
    assert p.exitcode == 0
    m = EZShmMirror(name)  # still there, with its data
    arr, ov = m.auto_view()
    assert np.array_equal(arr, chunk(0, 50).data)
    run(sink.on_message(chunk(50, 5)))
    assert np.array_equal(m.auto_view()[0], chunk(50, 5).data)


def test_compat_two_sinks_same_name_clear_error(sink):
    """Seed bug: a second sink of the same name unlinked the first one's segments."""
    name = sink.SETTINGS.shmem_name
    run(sink.on_message(chunk(0, 10)))
    other = ShMemCircBuff(name, 0.1)
    with pytest.raises(OSError) as ei:
        run(other.initialize())
    assert ei.value.errno == 16 and "writer" in str(ei.value)
    m = EZShmMirror(name)  # the first sink's data is untouched
    assert np.array_equal(m.auto_view()[0], chunk(0, 10).data)


def test_compat_header_never_torn(sink):
    """Seed bug: write_index and wrap_counter were two stores a reader could see apart."""
    name = sink.SETTINGS.shmem_name
    run(sink.on_message(chunk(0, 1)))
    m = EZShmMirror(name)
    stop = threading.Event()

    def writer():
        k = 1
        while not stop.is_set():
            run(sink.on_message(chunk(k, 7)))
            k += 7

    t = threading.Thread(target=writer)
    t.start()
    try:
        last = -1
        for _ in range(3000):
            meta = m.meta
            n = meta.wrap_counter * meta.shape[0] + meta.write_index
            assert meta.write_index < meta.shape[0] and n >= last and (n - 1) % 7 == 0
            last = n
    finally:
        stop.set()
        t.join()


def test_compat_mirror_waits_instead_of_polling(sink):
    name = sink.SETTINGS.shmem_name
    run(sink.on_message(chunk(0, 1)))
    m = EZShmMirror(name)
    m.auto_view()
    t0 = time.monotonic()
    arr, ov = m.auto_view(timeout=0.05)
    assert arr.size == 0 and time.monotonic() - t0 >= 0.04
    threading.Timer(0.05, lambda: run(sink.on_message(chunk(1, 3)))).start()
    arr, ov = m.auto_view(3, timeout=10)
    assert np.array_equal(arr, chunk(1, 3).data)


def test_compat_axis_moved_first_and_coordinate_axis(sink):
    name = sink.SETTINGS.shmem_name
    m = EZShmMirror(name)
    run(sink.on_message(chunk(0, 8, time_first=False)))  # dims (ch, time)
    arr, _ = m.auto_view()
    assert np.array_equal(arr, chunk(0, 8).data)
    # a coordinate axis (irregular): srate from the median step, as the seed
    d = np.ones((5, 2))
    run(sink.on_message(Msg(d, ["time", "ch"], {"time": Axis(data=np.arange(5) * 0.002)})))
    meta = m.meta
    assert meta.srate == 0.0 and meta.shape[0] == 50  # 0.1 s at 500 Hz
    assert m.auto_view()[0].shape == (5, 2)
    # a message without the axis is ignored
    run(sink.on_message(Msg(d, ["x", "ch"], {})))


def test_compat_on_settings_new_name(sink):
    old = sink.SETTINGS.shmem_name
    run(sink.on_message(chunk(0, 5)))
    new = _name()
    sink.on_settings(ShMemCircBuffSettings(new, 0.1))
    run(sink.on_message(chunk(0, 4)))
    assert np.array_equal(EZShmMirror(new).auto_view()[0], chunk(0, 4).data)
    arr, _ = EZShmMirror(old).auto_view()
    assert arr.size == 0  # the old ring was the sink's and is gone


def test_compat_mirror_independent_program(sink):
    name = sink.SETTINGS.shmem_name
    code = r'''
import sys, numpy as np
from shmstore.compat.ezmsg_shmem import EZShmMirror
m = EZShmMirror(sys.argv[1])
m.auto_view()
print("ready", flush=True)
got = 0
while got < 200:
    arr, ov = m.auto_view(timeout=1.0)
    assert not ov
    if arr.size:
        assert np.array_equal(arr[:, 0], np.arange(got, got + len(arr)))
        got += len(arr)
print("ok", got)
'''
    p = subprocess.Popen([sys.executable, "-c", code, name], stdout=subprocess.PIPE,
                         env=dict(os.environ))
    assert p.stdout.readline() == b"ready\n"  # connected: everything from now on is owed
    for k in range(0, 200, 10):
        run(sink.on_message(chunk(k, 10)))
        time.sleep(0.01)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0 and out.split() == [b"ok", b"200"]


def test_compat_auto_view_fast_path_matches_slow_path(sink):
    """auto_view is C (shmstore._RingMirror) for new frames in a known generation and
    Python (_auto_view_slow) for everything else: both give the same frames, overflow
    flags and cursors over chunks that wrap, lap the mirror, ask for exactly n, and
    change the layout midway (300 steps, seeded)."""
    name = sink.SETTINGS.shmem_name
    fast, slow = EZShmMirror(name), EZShmMirror(name)
    assert type(fast).auto_view is shmstore._shmstore._RingMirror.auto_view
    rng = np.random.default_rng(8)
    p, n_ch, n_fast = 0, 4, 0
    for step in range(300):
        if step % 97 == 96:
            n_ch += 1  # a new generation: both follow it in the slow path
        k = int(rng.choice([1, 3, 10, 40, 99, 130]))
        run(sink.on_message(chunk(p, k, n_ch=n_ch)))
        p += k
        n = None if step % 3 else int(rng.integers(1, 60))
        before = fast._cursor
        a, ov_a = fast.auto_view(n)
        b, ov_b = slow._auto_view_slow(n)
        assert ov_a == ov_b and a.shape == b.shape and np.array_equal(a, b), step
        assert fast._cursor == slow._cursor and fast._gen == slow._gen, step
        n_fast += fast._cursor != before and fast._gen == slow._gen
        if a.size and not a.flags.owndata:  # a view of the buffer: read-only
            assert not a.flags.writeable
    assert n_fast > 100  # the fast path ran
    fast.disconnect()
    slow.disconnect()


def test_compat_auto_view_views_wraps_and_arguments(sink):
    name = sink.SETTINGS.shmem_name
    m = EZShmMirror(name)
    run(sink.on_message(chunk(0, 90)))
    arr, ov = m.auto_view()
    assert np.shares_memory(arr, m.buffer) and not ov  # a view of the buffer
    run(sink.on_message(chunk(90, 20)))  # frames 90..109: wrap around the end (100)
    arr, ov = m.auto_view()
    assert not np.shares_memory(arr, m.buffer) and np.array_equal(arr, chunk(90, 20).data)
    run(sink.on_message(chunk(110, 5)))
    arr, ov = m.auto_view(n=6)  # not enough yet: nothing, and the frames kept
    assert arr.shape == (0, 4) and not ov
    arr, ov = m.auto_view(5, timeout=0)
    assert np.array_equal(arr, chunk(110, 5).data)
    with pytest.raises(TypeError):
        m.auto_view(1, 2, 3)
    with pytest.raises(TypeError):
        m.auto_view(count=3)
    with pytest.raises(TypeError):
        m.auto_view(None, timeout="soon")
    with pytest.raises(ValueError):
        m.auto_view(-1)
    run(sink.on_message(chunk(115, 2)))
    assert np.array_equal(m.auto_view(n=2, timeout=1.0)[0], chunk(115, 2).data)
    m.disconnect()
    assert m.auto_view()[0].size == 0  # disconnected: reconnects later, returns nothing


def test_compat_sink_fast_path_and_fallbacks(sink):
    """write_message takes the C path (shmstore._RingSinkPath) for messages of the layout
    of the current buffer and the Python path for anything else; both keep the header
    copy (STATE.meta_struct) and the frames the same."""
    name = sink.SETTINGS.shmem_name
    m = EZShmMirror(name)
    run(sink.on_message(chunk(0, 10)))
    fast = sink._fast
    assert isinstance(fast, shmstore._shmstore._RingSinkPath)
    assert fast.write(chunk(10, 30)) is True  # same layout: written by C
    run(sink.on_message(chunk(40, 95)))       # 135 frames in a ring of 100: wraps
    assert sink._fast is fast
    meta = sink.STATE.meta_struct
    assert (meta.write_index, meta.wrap_counter) == (35, 1)
    assert meta.write_index == m.meta.write_index and meta.wrap_counter == m.meta.wrap_counter
    arr, ov = m.auto_view()
    assert ov and np.array_equal(arr, chunk(35, 100).data)
    # not this layout: False, nothing written
    total = sink.STATE.ring.total
    for other in (chunk(0, 3, key="other"), chunk(0, 3, srate=500.0), chunk(0, 3, n_ch=5),
                  chunk(0, 3, dtype=np.float32), chunk(0, 3, time_first=False),
                  Msg(np.zeros((3, 4)), ["time", "ch"], {"time": Axis(data=np.arange(3.0))}),
                  Msg([[0.0] * 4] * 3, ["time", "ch"], {"time": Axis(gain=0.001)}, "k"),
                  Msg(np.zeros((3, 4)), ["space", "ch"], {"space": Axis(gain=0.001)}, "k"),
                  object()):
        assert fast.write(other) is False
    assert sink.STATE.ring.total == total
    # the Python path takes them: axis moved first (same layout: no new generation)
    gen = sink.STATE.ring.generation
    run(sink.on_message(chunk(135, 4, time_first=False)))
    assert sink.STATE.ring.generation == gen
    assert np.array_equal(m.auto_view()[0], chunk(135, 4).data)
    run(sink.on_message(chunk(139, 4, key="other")))  # another key: a new buffer
    assert sink.STATE.ring.generation == gen + 1 and sink._fast is not fast
    assert sink._fast.write(chunk(143, 2, key="other")) is True
    arr, ov = m.auto_view()
    assert np.array_equal(arr, chunk(139, 6).data) and m.meta.key == "other"
    run(sink.shutdown())
    assert sink._fast is None
    assert fast.write(chunk(0, 1)) is False  # its ring is closed: nothing happens
    m.disconnect()
