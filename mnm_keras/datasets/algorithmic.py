"""The algorithmic tasks of the paper (section 4.1, appendix A) as seeded, fixed-shape data.

Every task is an `AlgorithmicTask` that draws episodes with a NumPy generator and turns
them into a `tf.data.Dataset` of ``(inputs, targets, weights)``:

* ``inputs``: float32 ``[batch, time, input_size]`` (one-hot symbols, or bits);
* ``targets``: int32 ``[batch, time]`` class ids (dictionary, double copy) or float32
  ``[batch, time, 8]`` bits (priority sort);
* ``weights``: float32 ``[batch, time]``, 1 at the answer positions and 0 elsewhere, so the
  loss and the metrics (`mnm_keras.metrics`) count only the answers.

Shapes are fixed per task instance (no padding), so models compile once, under XLA too.
The same seed gives the same episodes; evaluation sets use a different seed.
"""

from __future__ import annotations

import abc

import numpy as np
import tensorflow as tf

NUM_LETTERS = 26


class AlgorithmicTask(abc.ABC):
    """Base class: a task knows its shapes and draws one episode from a NumPy generator."""

    name = ""
    #: "categorical" (targets are class ids, softmax output) or "binary" (bits, sigmoid).
    output_type = "categorical"

    @property
    @abc.abstractmethod
    def length(self) -> int:
        """Time steps T of every episode."""

    @property
    @abc.abstractmethod
    def input_size(self) -> int:
        """Input channels."""

    @property
    @abc.abstractmethod
    def output_size(self) -> int:
        """Classes (categorical) or bits (binary) per answer step."""

    @abc.abstractmethod
    def episode(self, rng: np.random.Generator):
        """One episode: ``(inputs [T, input_size], targets, weights [T])`` as NumPy arrays."""

    def arrays(self, num_episodes: int, seed: int):
        """``num_episodes`` episodes stacked into arrays (for a fixed evaluation set)."""
        rng = np.random.default_rng(seed)
        episodes = [self.episode(rng) for _ in range(num_episodes)]
        return tuple(np.stack(parts) for parts in zip(*episodes))

    def dataset(self, batch_size: int, seed: int, num_episodes: int | None = None, start: int = 0):
        """A `tf.data.Dataset` of batches; endless unless ``num_episodes`` is given.

        ``start`` skips the stream's first ``start`` episodes (a resumed run continues the
        stream where the finished epochs left it instead of training on them again). They
        are generated and discarded, so the stream after them is exactly the one a run from
        the beginning sees; ``num_episodes`` counts from ``start``.
        """
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive; received {batch_size}.")
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
            raise ValueError(f"`start` must be a non-negative integer; received {start!r}.")
        target_spec = (
            tf.TensorSpec([self.length], tf.int32)
            if self.output_type == "categorical"
            else tf.TensorSpec([self.length, self.output_size], tf.float32)
        )

        def generate():
            rng = np.random.default_rng(seed)
            for _ in range(start):
                self.episode(rng)
            count = 0
            while num_episodes is None or count < num_episodes:
                yield self.episode(rng)
                count += 1

        data = tf.data.Dataset.from_generator(
            generate,
            output_signature=(
                tf.TensorSpec([self.length, self.input_size], tf.float32),
                target_spec,
                tf.TensorSpec([self.length], tf.float32),
            ),
        )
        return data.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


class DictionaryInference(AlgorithmicTask):
    """Dictionary inference (section 4.1, appendix A): a toy translation learned in-episode.

    Each episode partitions the 26 letters at random into a 13-letter source and a 13-letter
    target vocabulary and draws a random bijection F between them, so the mapping is new in
    every episode and only a memory of the episode can answer. Symbols: letters 0-25, then
    ``EOS`` (26, end of a sequence), ``SEP`` (27, support-example separator), ``EOSS`` (28,
    end of the support set) and ``ANSWER`` (29, placeholder where the model emits the
    answer). Layout of an episode, for support size k and sequence length l:

        s_1 EOS F(s_1) SEP  ...  s_k EOS F(s_k) EOSS  q EOS ANSWER^l

    where every ``s_j`` is l source letters drawn with replacement and ``F(s_j)`` its
    letter-by-letter translation. The query ``q`` is l letters drawn from the letters seen
    in the support sources, and differs from every support source when such a sequence
    exists (for l = 1 every query repeats a support letter, as in the paper's first
    instance). The targets are ``F(q)`` at the l ``ANSWER`` positions (weights 1 there, 0
    elsewhere). Length ``T = k (2 l + 2) + 2 l + 1``. Classes: the 26 letters.
    """

    name = "dictionary"
    EOS, SEP, EOSS, ANSWER = 26, 27, 28, 29

    def __init__(self, support_size: int = 4, sequence_length: int = 1):
        for arg, value in (("support_size", support_size), ("sequence_length", sequence_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be a positive integer; received {arg}={value!r}.")
        self.support_size = support_size
        self.sequence_length = sequence_length

    @property
    def support_length(self):
        """Steps of the support set, ``k (2 l + 2)`` (the query starts after them)."""
        return self.support_size * (2 * self.sequence_length + 2)

    @property
    def length(self):
        return self.support_length + 2 * self.sequence_length + 1

    @property
    def input_size(self):
        return NUM_LETTERS + 4

    @property
    def output_size(self):
        return NUM_LETTERS

    def episode(self, rng):
        k, n = self.support_size, self.sequence_length
        letters = rng.permutation(NUM_LETTERS)
        source, target = letters[:13], letters[13:]
        mapping = np.empty(NUM_LETTERS, np.int64)
        mapping[source] = target  # F: a random bijection source -> target
        support = source[rng.integers(0, 13, size=(k, n))]
        seen = np.unique(support)
        sources = {tuple(row) for row in support}
        possible = len(seen) ** n > len(sources)  # is there a sequence not in the support?
        while True:  # rejection sampling; when possible, each try succeeds often
            query = seen[rng.integers(0, len(seen), size=n)]
            if not possible or tuple(query) not in sources:
                break
        symbols = []
        for j in range(k):
            symbols += list(support[j]) + [self.EOS] + list(mapping[support[j]])
            symbols.append(self.SEP if j < k - 1 else self.EOSS)
        symbols += list(query) + [self.EOS] + [self.ANSWER] * n
        symbols = np.asarray(symbols)
        targets = np.zeros(self.length, np.int32)
        weights = np.zeros(self.length, np.float32)
        targets[-n:] = mapping[query]
        weights[-n:] = 1.0
        return np.eye(self.input_size, dtype=np.float32)[symbols], targets, weights


class DoubleCopy(AlgorithmicTask):
    """Double copy (section 4.1, appendix A): read a sequence, then write it twice.

    Exact definition (the paper gives only its length and alphabet): ``length`` symbols
    (default 50) are drawn uniformly with replacement from ``num_symbols`` (default 10).
    The input has ``num_symbols + 2`` channels: a one-hot of the symbol for the first
    ``length`` steps, then one step with the delimiter channel (``num_symbols``) set, then
    ``2 * length`` steps with the answer-placeholder channel (``num_symbols + 1``) set. At
    those last ``2 * length`` steps the target is the sequence followed by the sequence
    again (weights 1 there, 0 elsewhere). Length ``T = 3 * length + 1``.
    """

    name = "double_copy"

    def __init__(self, length: int = 50, num_symbols: int = 10):
        if length < 1:
            raise ValueError(f"`length` must be positive; received length={length}.")
        if num_symbols < 2:
            raise ValueError(f"`num_symbols` must be at least 2; received {num_symbols}.")
        self.sequence_length = length
        self.num_symbols = num_symbols

    @property
    def length(self):
        return 3 * self.sequence_length + 1

    @property
    def input_size(self):
        return self.num_symbols + 2

    @property
    def output_size(self):
        return self.num_symbols

    def episode(self, rng):
        n, s = self.sequence_length, self.num_symbols
        sequence = rng.integers(0, s, size=n)
        inputs = np.zeros((self.length, self.input_size), np.float32)
        inputs[np.arange(n), sequence] = 1.0
        inputs[n, s] = 1.0
        inputs[n + 1 :, s + 1] = 1.0
        targets = np.zeros(self.length, np.int32)
        targets[n + 1 :] = np.concatenate([sequence, sequence])
        weights = np.zeros(self.length, np.float32)
        weights[n + 1 :] = 1.0
        return inputs, targets, weights


class PrioritySort(AlgorithmicTask):
    """Priority sort (NTM paper; section 4.1 and appendix A of the MNM paper).

    ``num_items`` (20) random binary vectors of ``bits`` (8) bits, each with a priority drawn
    uniformly from [-1, 1]. Input channels: the bits, the priority, a delimiter flag and an
    answer-placeholder flag (``bits + 3``). Steps: the items one per step (bits and
    priority), one delimiter step, then ``num_outputs`` (16) answer steps. The targets at
    the answer steps are the ``num_outputs`` vectors of highest priority in descending order
    of priority (weights 1 there). Length ``T = num_items + 1 + num_outputs``. Binary
    targets: a sigmoid per bit.
    """

    name = "priority_sort"
    output_type = "binary"

    def __init__(self, num_items: int = 20, num_outputs: int = 16, bits: int = 8):
        if not 1 <= num_outputs <= num_items:
            raise ValueError(
                f"`num_outputs` must be in [1, num_items={num_items}]; received {num_outputs}."
            )
        if bits < 1:
            raise ValueError(f"`bits` must be positive; received bits={bits}.")
        self.num_items = num_items
        self.num_outputs = num_outputs
        self.bits = bits

    @property
    def length(self):
        return self.num_items + 1 + self.num_outputs

    @property
    def input_size(self):
        return self.bits + 3

    @property
    def output_size(self):
        return self.bits

    def episode(self, rng):
        n, b, m = self.num_items, self.bits, self.num_outputs
        vectors = rng.integers(0, 2, size=(n, b)).astype(np.float32)
        priorities = rng.uniform(-1.0, 1.0, size=n).astype(np.float32)
        inputs = np.zeros((self.length, self.input_size), np.float32)
        inputs[:n, :b] = vectors
        inputs[:n, b] = priorities
        inputs[n, b + 1] = 1.0
        inputs[n + 1 :, b + 2] = 1.0
        order = np.argsort(-priorities, kind="stable")[:m]
        targets = np.zeros((self.length, b), np.float32)
        targets[n + 1 :] = vectors[order]
        weights = np.zeros(self.length, np.float32)
        weights[n + 1 :] = 1.0
        return inputs, targets, weights


TASKS = {
    "dictionary": DictionaryInference,
    "double_copy": DoubleCopy,
    "priority_sort": PrioritySort,
}


def get_task(name: str, **kwargs) -> AlgorithmicTask:
    """The task called ``name`` (one of `TASKS`), built with ``kwargs``."""
    if name not in TASKS:
        raise ValueError(f"`task` must be one of {sorted(TASKS)}; received task={name!r}.")
    return TASKS[name](**kwargs)
