"""The ez.Unit branch of shmstore.compat.ezmsg_shmem, against a stand-in ezmsg.

ezmsg cannot be installed here, so ShMemCircBuff's ezmsg half (the Unit subclass with its
Settings, State, InputStreams and decorated subscribers) is imported against
tests/ezmsg_standin/, a minimal package written after ezmsg's documented API (see its
README): NOT real ezmsg. The module is imported again with the stand-in first on
sys.path, the Unit is instantiated and driven as ezmsg's backend drives a unit (settings
at construction, setup() -> initialize(), each subscriber called with its stream's
messages, the check_continue task, shutdown()), and a mirror reads what it wrote."""
import asyncio
import importlib
import multiprocessing as mp
import os
import sys
import uuid

import numpy as np
import pytest

import shmstore
import shmstore.compat

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, "ezmsg_standin")


def _ours(name):
    return name == "ezmsg" or name.startswith("ezmsg.") or name == "shmstore.compat.ezmsg_shmem"


@pytest.fixture
def unit_mod(monkeypatch):
    """shmstore.compat.ezmsg_shmem imported with the stand-in ezmsg importable; the plain
    module (and no ezmsg) is put back afterwards."""
    saved = {k: v for k, v in sys.modules.items() if _ours(k)}
    saved_attr = getattr(shmstore.compat, "ezmsg_shmem", None)
    for k in saved:
        del sys.modules[k]
    monkeypatch.syspath_prepend(STANDIN)
    try:
        mod = importlib.import_module("shmstore.compat.ezmsg_shmem")
        yield mod
    finally:
        for k in [k for k in sys.modules if _ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
        if saved_attr is not None:
            shmstore.compat.ezmsg_shmem = saved_attr
        elif hasattr(shmstore.compat, "ezmsg_shmem"):
            del shmstore.compat.ezmsg_shmem


def subscribers(unit):
    """stream name -> the unit's subscriber of it, as ezmsg's backend routes messages."""
    out = {}
    for task in unit.tasks.values():
        stream = getattr(task, "__ez_subscribes__", None)
        if stream is not None:
            out[stream.name] = task
    return out


async def deliver(unit, task, msg):
    r = task(unit, msg)
    if asyncio.iscoroutine(r):
        await r


def test_compat_unit_branch_against_standin(unit_mod, monkeypatch):
    ezs = unit_mod
    ez = ezs.ez
    import ezmsg
    from ezmsg.util.messages.axisarray import AxisArray
    assert getattr(ezmsg, "STANDIN", False) and ez is not None  # the Unit branch is built
    assert issubclass(ezs.ShMemCircBuff, ez.Unit)
    assert issubclass(ezs.ShMemCircBuffSettings, ez.Settings)
    assert issubclass(ezs.ShMemCircBuffState, ez.State)
    assert isinstance(ezs.ShMemCircBuff.INPUT_SIGNAL, ez.InputStream)
    assert ezs.ShMemCircBuff.INPUT_SIGNAL.msg_type is AxisArray

    store = f"ezunit_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv(ezs.STORE_ENV, store)
    name = f"unit/{uuid.uuid4().hex[:8]}"
    parent, child = mp.Pipe()
    try:
        settings = ezs.ShMemCircBuffSettings(shmem_name=name, buf_dur=0.2, conn=child)
        with pytest.raises(dataclasses_frozen_error()):
            settings.buf_dur = 1.0  # ez.Settings are frozen
        unit = ezs.ShMemCircBuff(settings)
        assert unit.SETTINGS is settings and unit.STATE is None
        subs = subscribers(unit)
        assert set(subs) == {"INPUT_SIGNAL", "INPUT_SETTINGS"}
        assert getattr(subs["INPUT_SIGNAL"], "__ez_zerocopy__") is True
        assert "check_continue" in unit.tasks

        async def drive():
            await unit.setup()  # instantiates STATE, awaits initialize()
            assert isinstance(unit.STATE, ezs.ShMemCircBuffState)
            assert unit.STATE.ring is not None and unit.STATE.ring.writer
            mirror = ezs.EZShmMirror(name)
            # 1 kHz, (ch, time) dims: the sink moves time first
            data = np.arange(40 * 3, dtype=np.float32).reshape(3, 40)
            msg = AxisArray(data, ["ch", "time"], axes={"time": AxisArray.TimeAxis(fs=1000.0)},
                            key="eeg")
            await deliver(unit, subs["INPUT_SIGNAL"], msg)
            arr, ov = mirror.auto_view()
            assert np.array_equal(arr, data.T) and not ov
            meta = mirror.meta
            assert meta.bvalid and meta.srate == 1000.0 and meta.key == "eeg"
            assert tuple(meta.shape[: meta.ndim]) == (200, 3)
            # a coordinate axis, 1-D frames
            t = np.arange(10) / 500.0
            msg1 = AxisArray(np.arange(10.0), ["time"],
                             axes={"time": AxisArray.CoordinateAxis(data=t, dims=["time"])})
            await deliver(unit, subs["INPUT_SIGNAL"], msg1)
            arr, ov = mirror.auto_view()
            assert np.array_equal(arr, np.arange(10.0)) and mirror.meta.ndim == 1
            # new settings through INPUT_SETTINGS: another duration, a new buffer
            new = ezs.ShMemCircBuffSettings(shmem_name=name, buf_dur=0.5, conn=child)
            await deliver(unit, subs["INPUT_SETTINGS"], new)
            assert unit.SETTINGS is new
            await deliver(unit, subs["INPUT_SIGNAL"], msg)
            arr, ov = mirror.auto_view()
            assert np.array_equal(arr, data.T) and mirror.meta.shape[0] == 500
            # the check_continue task: "quit" on the connection shuts the unit down
            parent.send("quit")
            with pytest.raises(ez.NormalTermination):
                await unit.tasks["check_continue"](unit)
            mirror.disconnect()

        asyncio.run(drive())
        got = []
        while parent.poll(0.5):
            try:
                got.append(parent.recv())
            except EOFError:
                break
        assert "meta reset" in got and "buffer reset" in got and got[-1] == "close"
        with pytest.raises((FileNotFoundError, KeyError)):
            shmstore.Store(store, create=False).ring(name, create=False)  # removed
    finally:
        parent.close()
        try:
            shmstore.unlink(store)
        except FileNotFoundError:
            pass


def test_compat_unit_branch_unnamed_and_shutdown(unit_mod, monkeypatch):
    """shmem_name=None (the seed let SharedMemory pick a name): the frozen settings get the
    ring's name; shutdown() without a connection."""
    ezs = unit_mod
    from ezmsg.util.messages.axisarray import AxisArray
    store = f"ezunit2_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv(ezs.STORE_ENV, store)
    try:
        unit = ezs.ShMemCircBuff(shmem_name=None, buf_dur=0.05)  # settings from kwargs
        asyncio.run(unit.setup())
        name = unit.SETTINGS.shmem_name
        assert name and name.startswith("psm_")
        asyncio.run(unit.on_message(AxisArray(np.ones((5, 2)), ["time", "ch"],
                                              axes={"time": AxisArray.TimeAxis(fs=200.0)})))
        m = ezs.EZShmMirror(name)
        arr, ov = m.auto_view()
        assert arr.shape == (5, 2) and not ov
        m.disconnect()
        asyncio.run(unit.shutdown())
        assert unit.STATE.ring is None
    finally:
        try:
            shmstore.unlink(store)
        except FileNotFoundError:
            pass


def test_compat_plain_branch_restored():
    """After the stand-in tests the module is the plain one again (no ezmsg here)."""
    from shmstore.compat import ezmsg_shmem as ezs
    assert ezs.ez is None and "ezmsg" not in sys.modules


def dataclasses_frozen_error():
    import dataclasses
    return dataclasses.FrozenInstanceError
