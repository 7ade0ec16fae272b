"""shmstore.compat.replay: seed 001's Memory and Transition, with each of its bugs tested
as absent, 100,000 records of its layout, threads, fork/spawn children, and the
question's two workers as a program."""
import multiprocessing as mp
import os
import random
import subprocess
import sys
import threading

import numpy as np
import pytest

import shmstore
from shmstore.compat.replay import Memory, Transition

import helpers_replay as hr

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def mem():
    m = Memory(50, state_shape=(2, 3))
    yield m
    m.unlink()
    m.close()


def t(i, state_shape=(2, 3), **kw):
    fields = dict(actor_id=i % 5, step_number=i, state=np.full(state_shape, i % 256, np.uint8),
                  action=i % 4, next_state=np.full(state_shape, (i + 1) % 256, np.uint8),
                  reward=float(i), done=False)
    fields.update(kw)
    return Transition(**fields)


def same(a, b):
    return (a.actor_id == b.actor_id and a.step_number == b.step_number and
            (np.asarray(a.state) == b.state).all() and a.action == b.action and
            ((a.next_state is None and b.next_state is None) or
             (a.next_state is not None and b.next_state is not None and
              (np.asarray(a.next_state) == b.next_state).all())) and
            a.reward == b.reward and bool(a.done) == b.done)


def test_any_length_and_bounds():
    m = Memory(1234, state_shape=(1,))           # the recipe wanted a multiple of 1,000
    try:
        assert len(m) == 1234
        m[1233] = t(1, (1,))
        assert same(m[1233], t(1, (1,))) and same(m[-1], t(1, (1,)))
        for bad in (1234, 5000, -1235):          # the recipe let `length` through
            with pytest.raises(IndexError):
                m[bad]
            with pytest.raises(IndexError):
                m[bad] = t(0, (1,))
        with pytest.raises(IndexError):
            m["1"]
    finally:
        m.unlink()
        m.close()


def test_unwritten_positions_read_as_zeros(mem):
    z = mem[7]
    assert z.actor_id == 0 and z.reward == 0.0 and not z.done
    assert (z.state == 0).all() and (z.next_state == 0).all()


def test_values_round_trip(mem):
    cases = [t(1, actor_id=-3, step_number=-(2 ** 40), action=-1, reward=-0.25),
             t(2, reward=1e-300), t(3, reward=2.5, done=True),
             t(4, next_state=None, done=False),            # None without done
             t(5, next_state=None, done=True),
             t(6, done=True),                               # done with a next_state
             t(7, actor_id=2 ** 62, reward=7)]              # an int reward: a float now
    for i, x in enumerate(cases):
        mem[i] = x
    for i, x in enumerate(cases):
        y = mem[i]
        assert same(y, x), (i, y, x)
        assert isinstance(y.reward, float) and isinstance(y.done, bool)
    assert mem[3].next_state is None and not mem[3].done      # None round trips alone
    assert mem[5].done and mem[5].next_state is not None      # done keeps its next_state


def test_slices(mem):
    for i in range(50):
        mem[i] = t(i)
    assert [x.step_number for x in mem[0:]] == list(range(50))   # the recipe: TypeError
    assert [x.step_number for x in mem[:3]] == [0, 1, 2]
    assert [x.step_number for x in mem[::10]] == [0, 10, 20, 30, 40]
    assert [x.step_number for x in mem[48:53]] == [48, 49, 0, 1, 2]  # wraps, as the recipe
    mem[48:52] = [t(100 + k) for k in range(4)]                   # wraps too
    assert [x.step_number for x in mem[46:52]] == [46, 47, 100, 101, 102, 103]
    assert mem[2].step_number == 2
    with pytest.raises(TypeError):
        mem[0:2] = t(1)                                            # a list for a slice
    assert [x.step_number for x in mem][:3] == [102, 103, 2]
    assert len(list(iter(mem))) == 50


def test_bad_input_writes_nothing(mem):
    mem[0] = t(1)
    with pytest.raises(TypeError):
        mem[0] = (1, 2, 3)
    with pytest.raises(ValueError):
        mem[0] = t(2, state_shape=(3, 2))
    with pytest.raises((ValueError, TypeError)):
        mem[0] = t(2, reward="x")
    assert same(mem[0], t(1))


def test_fast_path_keeps_the_recipes_conversions(mem):
    """Slices of Transitions go to the table in one call; what that call refuses (a state
    of another dtype, a float action) still goes in as the one-by-one path converted it."""
    rows = [t(i) for i in range(5)]
    mem[10:15] = rows
    assert all(same(mem[10 + i], rows[i]) for i in range(5))
    odd = Transition(1, 2, np.ones((2, 3), np.float64), 3.0, None, 1, 0)
    mem[20:22] = [odd, odd]
    got = mem[21]
    assert got.state.dtype == np.uint8 and (got.state == 1).all() and got.action == 3
    assert got.next_state is None and got.reward == 1.0 and got.done is False
    mem[-1:] = [rows[0]]                      # a slice of negative start wraps
    assert same(mem[len(mem) - 1], rows[0])
    mem[48:53] = rows                         # wraps modulo the length
    assert same(mem[0], rows[2]) and same(mem[49], rows[1])
    assert [x.step_number for x in mem.sample(20)]


def test_threads(mem):
    """The recipe kept its read/write cursor in self._offset: threads mixed records."""
    errors = []

    def work(k):
        for r in range(200):
            i = (k * 12 + r) % 48
            mem[i] = t(i + 1000 * k, actor_id=k)
            x = mem[(i + 7) % 48]
            if x.step_number and x.step_number % 256 != x.state[0, 0]:
                errors.append(x.step_number)
    ths = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for x in ths:
        x.start()
    for x in ths:
        x.join()
    assert not errors


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_child_exit_leaves_memory(mem, method):
    """The recipe's __del__ unlinked the segment in whichever process exited first."""
    mem[0] = t(1)
    ctx = mp.get_context(method)
    p = ctx.Process(target=hr.child_write, args=(mem, 1, 42))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert mem[1].step_number == 42 and mem[0].step_number == 1
    del p
    m2 = Memory(50, state_shape=(2, 3), name=mem.name, create=False)
    assert m2[1].step_number == 42
    m2.close()


def test_context_manager_removes(tmp_path):
    with Memory(8, state_shape=(1,)) as m:
        m[0] = t(0, (1,))
        name = m.name
    with pytest.raises(shmstore.NotFoundError):
        Memory(8, state_shape=(1,), name=name, create=False)


def test_hundred_thousand_records_of_the_answers_layout():
    store = f"t_replay_big_{os.getpid()}"
    fds = len(os.listdir("/proc/self/fd"))
    m = Memory(100_000, store=store)                # 4x84x84 uint8 frames, twice
    try:
        assert len(os.listdir("/proc/self/fd")) <= fds + 1   # one store: one fd
        frame = np.arange(4 * 84 * 84, dtype=np.uint32).astype(np.uint8).reshape(4, 84, 84)
        positions = [0, 1, 99_999, 50_000] + random.Random(1).sample(range(100_000), 300)
        for p in positions:
            m[p] = Transition(p % 9, p, frame, p % 4, None if p % 2 else frame, -p / 3, p % 2 == 1)
        for p in positions:
            x = m[p]
            assert x.step_number == p and x.reward == -p / 3 and (x.state == frame).all()
            assert (x.next_state is None) == bool(p % 2)
        m[99_990:100_010] = [Transition(1, 7, frame, 0, frame, 0.0, False)] * 20
        assert m[5].step_number == 7 and m[99_995].step_number == 7
        batch = m.sample(32)
        assert len(batch) == 32 and all(isinstance(b, Transition) for b in batch)
        assert len(random.choices(m, k=32)) == 32
    finally:
        m.unlink()
        m.close()
        shmstore.unlink(store)


def test_the_two_workers_program():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE),
                                                       os.environ.get("PYTHONPATH", "")]))
    out = subprocess.check_output(
        [sys.executable, os.path.join(os.path.dirname(HERE), "examples", "replay_workers.py"),
         "40", "3000"], env=env, timeout=120)
    assert b"learner read 40 batches of 32; pusher exit 0" in out
