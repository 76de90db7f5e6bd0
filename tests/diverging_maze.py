"""A maze training loop whose first weight turns NaN after a given update: the divergence
tests of ``examples/maze_training.py`` and ``examples/maze_a2c.py``."""

import numpy as np
import tensorflow as tf

from examples import maze_training


def diverge_after(monkeypatch, update):
    """Makes `maze_training.make_iteration` fill the agent's first trainable weight with
    NaN after optimizer step ``update``; returns the original (to undo it by hand)."""
    make_iteration = maze_training.make_iteration

    def poisoned(tf_env, agent, episode_length):
        iteration = make_iteration(tf_env, agent, episode_length)

        def wrapped():
            result = iteration()
            if int(agent.train_step_counter.numpy()) == update:
                variable = agent.network.trainable_variables[0]
                variable.assign(tf.fill(variable.shape, np.nan))
            return result

        return wrapped

    monkeypatch.setattr(maze_training, "make_iteration", poisoned)
    return make_iteration
