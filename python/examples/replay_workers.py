"""The two workers of seed 001's question, on shmstore.compat.replay.

An actor puts transitions into `replay_in_queue`; the push worker collects them and
writes them into the shared Memory 100 at a time (a slice that wraps modulo the length);
the sample worker draws batches with random.choices and puts them into
`replay_out_queue`, which the learner (here: the main process) keeps reading. The
question's code, with one import changed: no lock anywhere, and the sampler never makes
the pusher wait.

    python3 examples/replay_workers.py [n_batches] [memory_length]
"""
import multiprocessing as mp
import random
import sys

import numpy as np

from shmstore.compat.replay import Memory, Transition

BATCH_SIZE = 32


class Replay:
    def __init__(self, memory_maxlen, initial_memory=1000):
        self.memory = Memory(memory_maxlen)
        self.memory_maxlen = memory_maxlen
        self.initial_memory = initial_memory
        self.batch_size = BATCH_SIZE
        self.sample_count = 0
        self.buffer_in = []
        self.replay_in_queue = mp.Queue(maxsize=1000)
        self.replay_out_queue = mp.Queue(maxsize=16)

    def _push_worker(self) -> None:
        buffer_len = 100
        while True:
            sample = self.replay_in_queue.get()
            if sample is None:
                return
            self.buffer_in.append(sample)
            if len(self.buffer_in) >= buffer_len:
                index = self.sample_count % self.memory_maxlen
                self.memory[index: index + buffer_len] = self.buffer_in
                self.sample_count += buffer_len
                self.buffer_in = []

    def _sample_worker(self) -> None:
        while True:
            batch = random.choices(self.memory, k=self.batch_size)
            self.replay_out_queue.put(batch)


def actor(q, n, actor_id):
    state = np.zeros((4, 84, 84), np.uint8)
    for step in range(n):
        nxt = np.full((4, 84, 84), step % 256, np.uint8)
        done = step % 50 == 49
        q.put(Transition(actor_id, step, state, random.randrange(4), None if done else nxt,
                         random.uniform(-1, 1), done))
        state = nxt
    q.put(None)


def main(n_batches=200, memory_length=10_000):
    ctx = mp.get_context("fork")
    r = Replay(memory_length)
    with r.memory:                                   # the creator removes it at the end
        workers = [ctx.Process(target=r._push_worker), ctx.Process(target=r._sample_worker)]
        act = ctx.Process(target=actor, args=(r.replay_in_queue, 5000, 1))
        for p in workers + [act]:
            p.start()
        steps = 0
        for _ in range(n_batches):                   # the learner
            batch = r.replay_out_queue.get(timeout=60)
            assert len(batch) == BATCH_SIZE
            steps += sum(t.step_number for t in batch)
        act.join()
        workers[0].join(60)                          # the pusher stops after the actor
        workers[1].terminate()
        workers[1].join()
        print(f"learner read {n_batches} batches of {BATCH_SIZE}; pusher exit "
              f"{workers[0].exitcode}")
        return workers[0].exitcode


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    sys.exit(main(*args))
