r"""Pictures of what the memory does on a bAbI story (paper section 4.2, figure 5).

    python examples/memory_pictures.py --model_dir=runs/babi_mnm_p \
        --data_dir=/path/to/tasks_1-20_v1-2 --task=1 --story_index=0

Loads a model trained by ``examples/babi.py`` (its ``--model_dir/model.keras``, with the
word ids of the ``vocabulary.json`` beside it), reads story ``--story_index`` of task
``--task``'s official test file (of the version the model was trained on), runs the MNM
over it step by step (`mnm_keras.interactions.trace_interactions`) and writes three PNG
heat maps of cosine similarity to ``--output_dir`` (default ``--model_dir/pictures``), with
the story's words on both axes (rows: later step t2; columns: earlier step t1):

* ``..._read_vs_written.png``: read values ``v^r(t2)`` against written values ``v^w(t1)``,
  ``t1 <= t2`` (bright: content stored at t1 is retrieved at t2);
* ``..._written_vs_written.png``: written values ``v^w(t2)`` against ``v^w(t1)``, ``t1 < t2``;
* ``..._write_keys_vs_write_keys.png``: write keys ``k^w(t2)`` against ``k^w(t1)``,
  ``t1 < t2``.

``--question=q`` stops the story after its q-th question (0-based) and its answer
placeholders, so the question's words are the last rows (figure 5a); ``--last_rows=N``
shows only the last N steps as rows (figure 5b: the end of a story against all of it).
``--heads`` is ``mean`` (same-head similarities averaged over heads), ``pairs`` (all head
pairs averaged) or a head index. Every flag is a field of `Config`.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np

from mnm_keras import MNM
from mnm_keras.datasets import babi
from mnm_keras.interactions import MAP_TITLES, similarity_maps, trace_interactions

try:  # run as a script (python examples/memory_pictures.py) or as a module (-m)
    from examples import training
    from examples.config_flags import main, option
    from examples.plotting import plot_similarity_map
except ImportError:  # pragma: no cover
    import training
    from config_flags import main, option
    from plotting import plot_similarity_map


@dataclasses.dataclass(frozen=True)
class Config:
    """Which model, story and maps; every field is a flag of the same name."""

    model_dir: str | None = option(
        None, "An examples/babi.py run (its model.keras and vocabulary.json); required."
    )
    data_dir: str | None = option(
        None, "The unpacked release (the folder with en/ and en-10k/); required."
    )
    version: str | None = option(
        None,
        "The version the model was trained on (default: the one in its vocabulary.json).",
        choices=babi.VERSIONS,
    )
    task: int = option(1, "bAbI task (1..20) of the story.")
    story_index: int = option(0, "Which story of the task's test file (0-based).")
    question: int | None = option(None, "Stop after this question (0-based); default all.")
    last_rows: int | None = option(None, "Show only the last N steps as rows.")
    heads: str = option("mean", "'mean', 'pairs' or a head index.")
    output_dir: str | None = option(
        None, "Where the PNG files go (default: the model_dir's pictures/)."
    )

    def __post_init__(self):
        for name in ("model_dir", "data_dir"):
            if not getattr(self, name):
                raise ValueError(f"`{name}` is required; received {name}={getattr(self, name)!r}.")
        if self.version is not None and self.version not in babi.VERSIONS:
            raise ValueError(
                f"`version` must be one of {list(babi.VERSIONS)} or None; "
                f"received version={self.version!r}."
            )
        if self.task not in babi.TASK_NAMES:
            raise ValueError(
                f"`task` must be a bAbI task id in 1..20; received task={self.task!r}."
            )
        for name in ("story_index", "question"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValueError(
                    f"`{name}` must be a non-negative integer; received {name}={value!r}."
                )
        if self.last_rows is not None:
            training.check_positive_int("last_rows", self.last_rows)
        if self.heads not in ("mean", "pairs") and not str(self.heads).isdigit():
            raise ValueError(
                f"`heads` must be 'mean', 'pairs' or a head index; received heads={self.heads!r}."
            )


def load_vocabulary(model_dir, version=None):
    """``(words, version)`` of the model in ``model_dir``: its ``vocabulary.json``.

    Raises:
      FileNotFoundError: no ``vocabulary.json`` in ``model_dir``.
      ValueError: ``version`` is not the one the model was trained on.
    """
    path = os.path.join(model_dir, "vocabulary.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"`model_dir` ({model_dir!r}): no {path!r}; expected the model_dir of an "
            "examples/babi.py run (model.keras and vocabulary.json)."
        )
    with open(path) as f:
        saved = json.load(f)
    if version is not None and saved.get("version") != version:
        raise ValueError(
            f"`version` must be the one the model was trained on ({saved.get('version')!r}, "
            f"from {path}); received version={version!r}."
        )
    return saved["words"], saved["version"]


def truncate_story(story, question):
    """The story up to and including its ``question``-th question's answer placeholders."""
    if question is None:
        return story
    if not 0 <= question < len(story.answers):
        raise ValueError(
            f"`question` must be in [0, {len(story.answers)}) for this story; "
            f"received question={question}."
        )
    end = story.answers[question][0][-1] + 1
    return babi.Story(story.task, story.tokens[:end], story.answers[: question + 1])


def _layers(network, model_dir):
    recurrent = [layer for layer in network.layers if isinstance(layer, MNM)]
    embedding = [layer for layer in network.layers if isinstance(layer, keras.layers.Embedding)]
    dense = [layer for layer in network.layers if isinstance(layer, keras.layers.Dense)]
    if len(recurrent) != 1 or len(embedding) != 1 or len(dense) != 1:
        raise ValueError(
            f"`model_dir` must hold an examples/babi.py MNM model (Embedding -> MNM -> "
            f"Dense; --model=mnm_p or mnm_g); {model_dir!r} has layers "
            f"{[type(layer).__name__ for layer in network.layers]}."
        )
    return embedding[0], recurrent[0], dense[0]


def run(config):
    """Traces a trained bAbI MNM on one test story and writes the figure-5 heat maps.

    Returns:
      A dict: ``words`` (the story's tokens, the axes' labels), ``maps`` (name ->
      ``[len(words), len(words)]`` array), ``files`` (name -> PNG path), ``answers``
      (one ``(question words, answer, predicted)`` triple per question).

    Raises:
      ValueError: ``story_index``, ``question`` or ``last_rows`` is out of range for the
        story, ``version`` is not the model's, or the model has no MNM layer.
    """
    model_dir, task, story_index = config.model_dir, config.task, config.story_index
    heads = config.heads if config.heads in ("mean", "pairs") else int(config.heads)
    output_dir = config.output_dir or os.path.join(model_dir, "pictures")
    vocabulary, version = load_vocabulary(model_dir, config.version)
    network = keras.saving.load_model(os.path.join(model_dir, "model.keras"), compile=False)
    embedding, recurrent, dense = _layers(network, model_dir)
    stories = babi.read_split(config.data_dir, version, "test", [task])
    if not 0 <= story_index < len(stories):
        raise ValueError(
            f"`story_index` must be in [0, {len(stories)}) for task {task}'s test file; "
            f"received story_index={story_index}."
        )
    story = truncate_story(stories[story_index], config.question)
    index = babi.word_index(vocabulary)
    inputs = babi.encode(story, index)[0][None]  # [1, time]
    trace = trace_interactions(recurrent, embedding(inputs))
    predicted = np.asarray(dense(trace["outputs"]))[0].argmax(-1)
    answers = []
    for positions, words in story.answers:
        end = positions[0]  # the question's "?" is at end - 1
        begin = end - 1
        while begin > 0 and story.tokens[begin - 1] not in (".", "?", babi.PLACEHOLDER):
            begin -= 1
        answers.append(
            (
                " ".join(story.tokens[begin:end]),
                ",".join(words),
                ",".join(vocabulary[int(predicted[p])] for p in positions),
            )
        )
    maps = similarity_maps(trace, 0, heads=heads)
    length = len(story.tokens)
    last_rows = config.last_rows
    if last_rows is not None and not 1 <= last_rows <= length:
        raise ValueError(
            f"`last_rows` must be in [1, {length}] (the story's length); "
            f"received last_rows={last_rows}."
        )
    rows = None if last_rows is None else (length - last_rows, length)
    os.makedirs(output_dir, exist_ok=True)
    files = {}
    head_text = {"mean": "mean over heads", "pairs": "mean over head pairs"}.get(
        heads, f"head {heads}"
    )
    for name, matrix in maps.items():
        path = os.path.join(output_dir, f"memory_task{task}_story{story_index}_{name}.png")
        title = (
            f"bAbI {version} task {task}, test story {story_index}: {MAP_TITLES[name]} "
            f"({head_text})"
        )
        plot_similarity_map(path, matrix, story.tokens, title, rows=rows)
        files[name] = path
    return {"words": list(story.tokens), "maps": maps, "files": files, "answers": answers}


def summary(result):
    lines = [
        f"{question}  answer: {answer}, predicted: {predicted}"
        for question, answer, predicted in result["answers"]
    ]
    return "\n".join([*lines, *(f"wrote {path}" for path in result["files"].values())])


if __name__ == "__main__":
    main(Config, run, summary)
