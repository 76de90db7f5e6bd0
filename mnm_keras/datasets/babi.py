"""Reader of the bAbI tasks (v1.2, English) in the word-level setup of the DNC and MNM papers.

The official release (Weston et al. 2015) is a folder ``tasks_1-20_v1-2`` with ``en/`` (1k)
and ``en-10k/`` (10k) sub-folders of ``qa{N}_{name}_{train,test}.txt`` files. Each line is
``ID text``; a question line is ``ID question<TAB>answer<TAB>supporting ids``; IDs restart at
1 with every story.

Word-level conventions (paper section 4.2, appendix A; DNC paper):

* lower-case; ``.`` and ``?`` are tokens of their own; sentence ids and supporting facts
  are dropped;
* a whole story (its sentences and questions, in order) is one sequence;
* after each question come one ``-`` placeholder per answer word (answers of tasks 8 and 19
  are split on ``,``), and the model emits the answer word at each placeholder;
* the loss is at the placeholders only, and a question is right only if all of its answer
  words are right.

This module reads only the directory it is given: mnm_keras never downloads data.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

import numpy as np
import tensorflow as tf

OFFICIAL_RELEASE = (
    "the official bAbI release tasks_1-20_v1-2 (https://research.facebook.com/downloads/babi/, "
    "archive http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz)"
)
PLACEHOLDER = "-"
PAD = "<pad>"
TASK_NAMES = {
    1: "single-supporting-fact",
    2: "two-supporting-facts",
    3: "three-supporting-facts",
    4: "two-arg-relations",
    5: "three-arg-relations",
    6: "yes-no-questions",
    7: "counting",
    8: "lists-sets",
    9: "simple-negation",
    10: "indefinite-knowledge",
    11: "basic-coreference",
    12: "conjunction",
    13: "compound-coreference",
    14: "time-reasoning",
    15: "basic-deduction",
    16: "basic-induction",
    17: "positional-reasoning",
    18: "size-reasoning",
    19: "path-finding",
    20: "agents-motivations",
}
VERSIONS = ("en", "en-10k")
_TOKEN = re.compile(r"[\w']+|[.?]")


class BabiFormatError(ValueError):
    """A line of a bAbI file that does not follow the format; names the file and line."""


class Story(NamedTuple):
    """One story: its tokens (with placeholders) and, per question, the answer positions.

    Attributes:
      task: task id, 1..20.
      tokens: the story's tokens, with one ``-`` after each question per answer word.
      answers: one ``(positions, words)`` pair per question: the placeholder positions in
        ``tokens`` and the answer words to emit there.
    """

    task: int
    tokens: list
    answers: list


def task_file(data_dir, version, task, split):
    """Path of one task's file in the release layout."""
    return os.path.join(data_dir, version, f"qa{task}_{TASK_NAMES[task]}_{split}.txt")


def tokenize(text):
    return _TOKEN.findall(text.lower())


def parse_file(path, task):
    """Parses one bAbI file into `Story` objects; errors name the file and line."""
    stories, tokens, answers, previous_id = [], [], [], 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            head, _, text = line.partition(" ")
            if not head.isdigit() or not text.strip():
                raise BabiFormatError(
                    f"{where}: expected 'ID text' with a numeric ID; got {line[:80]!r}"
                )
            line_id = int(head)
            if line_id == 1:
                if tokens:
                    stories.append(Story(task, tokens, answers))
                tokens, answers = [], []
            elif line_id != previous_id + 1:
                raise BabiFormatError(
                    f"{where}: line ID {line_id} does not follow {previous_id} (a story's IDs "
                    "count up from 1)"
                )
            previous_id = line_id
            if "\t" in text:
                parts = text.split("\t")
                if len(parts) != 3 or not parts[1].strip():
                    raise BabiFormatError(
                        f"{where}: a question line must be 'ID question<TAB>answer<TAB>"
                        f"supporting ids'; got {line[:80]!r}"
                    )
                question, answer = parts[0], parts[1]
                words = [w.strip().lower() for w in answer.split(",")]
                if not tokenize(question) or not all(words):
                    raise BabiFormatError(f"{where}: empty question or answer in {line[:80]!r}")
                tokens.extend(tokenize(question))
                start = len(tokens)
                tokens.extend([PLACEHOLDER] * len(words))
                answers.append((list(range(start, start + len(words))), words))
            else:
                tokens.extend(tokenize(text))
    if tokens:
        stories.append(Story(task, tokens, answers))
    return stories


def check_release(data_dir, version="en-10k", tasks=range(1, 21), splits=("train", "test")):
    """Raises `FileNotFoundError` listing every missing file, and where to get them."""
    if version not in VERSIONS:
        raise ValueError(f"`version` must be one of {VERSIONS}; received version={version!r}.")
    missing = [
        task_file(data_dir, version, task, split)
        for task in tasks
        for split in splits
        if not os.path.isfile(task_file(data_dir, version, task, split))
    ]
    if missing:
        shown = "\n  ".join(missing[:10]) + ("\n  ..." if len(missing) > 10 else "")
        raise FileNotFoundError(
            f"{len(missing)} bAbI file(s) missing under {data_dir!r}:\n  {shown}\n"
            f"The data directory must hold {OFFICIAL_RELEASE}, unpacked (the folder that "
            f"contains en/ and en-10k/)."
        )


def read_split(data_dir, version="en-10k", split="train", tasks=range(1, 21)):
    """All stories of ``split`` for ``tasks``, in task order."""
    tasks = list(tasks)
    for task in tasks:
        if task not in TASK_NAMES:
            raise ValueError(f"bAbI task ids are 1..20; received {task!r}.")
    check_release(data_dir, version, tasks, (split,))
    stories = []
    for task in tasks:
        stories.extend(parse_file(task_file(data_dir, version, task, split), task))
    return stories


VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 0


def split_train(stories, seed=VALIDATION_SEED, fraction=VALIDATION_FRACTION):
    """``(train, validation)``: per task, a seeded ``fraction`` of the training stories
    goes to validation (the size of the official en-valid split)."""
    train, validation = [], []
    for task in sorted({s.task for s in stories}):
        own = [s for s in stories if s.task == task]
        order = np.random.default_rng(seed + task).permutation(len(own))
        cut = int(round(fraction * len(own)))
        chosen = set(order[:cut].tolist())
        for i, story in enumerate(own):
            (validation if i in chosen else train).append(story)
    return train, validation


def word_index(vocabulary):
    """The word -> id dict of a vocabulary list."""
    return {word: i for i, word in enumerate(vocabulary)}


def build_vocabulary(stories):
    """Sorted word list of the stories (inputs and answers), ``<pad>`` first at id 0."""
    words = set()
    for story in stories:
        words.update(story.tokens)
        for _, answer in story.answers:
            words.update(answer)
    return [PAD] + sorted(words)


def release_vocabulary(data_dir, version):
    """The vocabulary of all 20 tasks of ``version``, train and test (159 words + ``<pad>``).

    What `examples/babi.py` trains with, so that runs on task subsets share word ids.
    """
    return build_vocabulary(
        read_split(data_dir, version, "train") + read_split(data_dir, version, "test")
    )


def encode(story, vocabulary):
    """Integer arrays of one story: ``(inputs, targets, weights)``, each ``[length]``.

    ``targets`` holds the answer word's id at placeholder positions (0 elsewhere) and
    ``weights`` is 1 exactly there. ``vocabulary`` is the word list, or a ready
    word -> id dict (to encode many stories without rebuilding it).
    """
    index = vocabulary if isinstance(vocabulary, dict) else word_index(vocabulary)
    try:
        inputs = np.array([index[token] for token in story.tokens], np.int32)
        targets = np.zeros(len(story.tokens), np.int32)
        weights = np.zeros(len(story.tokens), np.float32)
        for positions, words in story.answers:
            targets[positions] = [index[word] for word in words]
            weights[positions] = 1.0
    except KeyError as error:
        raise ValueError(
            f"word {error.args[0]!r} of task {story.task} is not in the vocabulary"
        ) from None
    return inputs, targets, weights


def length_buckets(lengths, growth=1.2):
    """Geometric bucket boundaries from the shortest to past the longest story.

    Each boundary is about ``growth`` times the previous one, so a story is padded by less
    than ``1 - 1/growth`` of its bucket's length (17% for 1.2), whatever the tail of the
    length distribution.
    """
    if growth <= 1.0:
        raise ValueError(f"`growth` must be greater than 1; received growth={growth}.")
    lengths = np.asarray(lengths)
    boundaries = [int(lengths.min()) + 1]
    while boundaries[-1] <= lengths.max():
        boundaries.append(max(boundaries[-1] + 1, int(np.ceil(boundaries[-1] * growth))))
    return boundaries


def make_dataset(stories, vocabulary, batch_size, bucket_boundaries=None, shuffle_seed=None):
    """A `tf.data.Dataset` of padded ``(inputs, targets, weights)`` batches of stories.

    With ``bucket_boundaries`` (e.g. from `length_buckets`), stories of similar length are
    batched together (`tf.data.Dataset.bucket_by_sequence_length`) and each batch is padded
    to its bucket's upper boundary, so padding stays small and the number of distinct
    shapes (retracings) stays bounded; without, batches pad to their longest story.
    Padding uses id 0 (``<pad>``) with weight 0. ``shuffle_seed`` shuffles the stories.
    """
    index = word_index(vocabulary)
    encoded = [encode(story, index) for story in stories]

    def generate():
        order = np.arange(len(encoded))
        if shuffle_seed is not None:
            order = np.random.default_rng(shuffle_seed).permutation(len(encoded))
        for i in order:
            yield encoded[i]

    spec = (
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([None], tf.float32),
    )
    data = tf.data.Dataset.from_generator(generate, output_signature=spec)
    if bucket_boundaries is None:
        data = data.padded_batch(batch_size)
        batches = -(-len(encoded) // batch_size)
    else:
        data = data.bucket_by_sequence_length(
            lambda inputs, targets, weights: tf.shape(inputs)[0],
            bucket_boundaries=list(bucket_boundaries),
            bucket_batch_sizes=[batch_size] * (len(bucket_boundaries) + 1),
            pad_to_bucket_boundary=True,
        )
        # bucket i holds lengths in [boundaries[i-1], boundaries[i]); each ends in a partial batch
        buckets = np.digitize([len(e[0]) for e in encoded], list(bucket_boundaries))
        batches = sum(-(-count // batch_size) for count in np.bincount(buckets))
    # A known length lets Keras iterate a validation set the same way at every epoch.
    return data.apply(tf.data.experimental.assert_cardinality(int(batches)))


def padding_fraction(dataset):
    """Fraction of the tokens in a batched dataset that are padding (input id 0)."""
    padded = total = 0
    for inputs, _, _ in dataset:
        inputs = np.asarray(inputs)
        padded += int((inputs == 0).sum())
        total += inputs.size
    return padded / max(total, 1)
