"""compat.replay functions run in child processes (importable by spawn children)."""
import numpy as np

from shmstore.compat.replay import Transition


def child_write(memory, position, step):
    memory[position] = Transition(1, step, np.zeros((2, 3), np.uint8), 0, None, 0.0, True)
