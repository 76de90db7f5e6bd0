r"""Pictures of what the memory does on a bAbI story (paper section 4.2, figure 5).

    python examples/memory_pictures.py --model_path=runs/babi_mnm_p/model.keras \
        --data_dir=/path/to/tasks_1-20_v1-2 --version=en-10k --task=1 --story_index=0 \
        --output_dir=runs/babi_mnm_p/pictures

Loads a model trained by ``examples/babi.py`` (its ``model.keras``; the word ids come from
the ``vocabulary.json`` beside it, or, if that is missing, are rebuilt the way training
builds them), reads story ``--story_index`` of task ``--task``'s official test file, runs
the MNM over it step by step (`mnm_keras.interactions.trace_interactions`) and writes three
PNG heat maps of cosine similarity, with the story's words on both axes (rows: later step
t2; columns: earlier step t1):

* ``..._read_vs_written.png``: read values ``v^r(t2)`` against written values ``v^w(t1)``,
  ``t1 <= t2`` (bright: content stored at t1 is retrieved at t2);
* ``..._written_vs_written.png``: written values ``v^w(t2)`` against ``v^w(t1)``, ``t1 < t2``;
* ``..._write_keys_vs_write_keys.png``: write keys ``k^w(t2)`` against ``k^w(t1)``,
  ``t1 < t2``.

``--question=q`` stops the story after its q-th question (0-based) and its answer
placeholders, so the question's words are the last rows (figure 5a); ``--last_rows=N``
shows only the last N steps as rows (figure 5b: the end of a story against all of it).
``--heads`` is ``mean`` (same-head similarities averaged over heads), ``pairs`` (all head
pairs averaged) or a head index.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
from absl import app, flags

from mnm_keras import MNM
from mnm_keras.datasets import babi
from mnm_keras.interactions import MAP_TITLES, similarity_maps, trace_interactions
from mnm_keras.memory_pictures import plot_similarity_map

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_string("model_path", None, "The model.keras written by examples/babi.py.")
    flags.DEFINE_string("data_dir", None, "The unpacked release (folder with en/ and en-10k/).")
    flags.DEFINE_enum("version", "en-10k", list(babi.VERSIONS), "The version trained on.")
    flags.DEFINE_integer("task", 1, "bAbI task (1..20) of the story.")
    flags.DEFINE_integer("story_index", 0, "Which story of the task's test file (0-based).")
    flags.DEFINE_integer("question", None, "Stop after this question (0-based); default all.")
    flags.DEFINE_integer("last_rows", None, "Show only the last N steps as rows.")
    flags.DEFINE_string("heads", "mean", "'mean', 'pairs' or a head index.")
    flags.DEFINE_string("output_dir", "memory_pictures", "Where the PNG files go.")


def load_vocabulary(model_path, data_dir, version):
    """The word list the model was trained with: ``vocabulary.json`` beside ``model_path``,
    else rebuilt like `examples.babi.train_and_evaluate` does (all 20 tasks, train + test)."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "vocabulary.json")
    if not os.path.exists(path):
        return babi.release_vocabulary(data_dir, version)
    with open(path) as f:
        saved = json.load(f)
    if saved.get("version") != version:
        raise ValueError(
            f"`version` must be the one the model was trained on ({saved.get('version')!r}, "
            f"from {path}); received version={version!r}."
        )
    return saved["words"]


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


def _layers(network, model_path):
    recurrent = [layer for layer in network.layers if isinstance(layer, MNM)]
    embedding = [layer for layer in network.layers if isinstance(layer, keras.layers.Embedding)]
    dense = [layer for layer in network.layers if isinstance(layer, keras.layers.Dense)]
    if len(recurrent) != 1 or len(embedding) != 1 or len(dense) != 1:
        raise ValueError(
            f"`model_path` must hold an examples/babi.py MNM model (Embedding -> MNM -> "
            f"Dense; --model=mnm_p or mnm_g); {model_path!r} has layers "
            f"{[type(layer).__name__ for layer in network.layers]}."
        )
    return embedding[0], recurrent[0], dense[0]


def make_pictures(
    model_path,
    data_dir,
    version="en-10k",
    task=1,
    story_index=0,
    output_dir="memory_pictures",
    question=None,
    last_rows=None,
    heads="mean",
):
    """Traces a trained bAbI MNM on one test story and writes the figure-5 heat maps.

    Args:
      model_path: a ``model.keras`` written by `examples.babi.train_and_evaluate`.
      data_dir: the release folder (with ``en/`` and ``en-10k/``).
      version: the version the model was trained on (``en`` or ``en-10k``).
      task: bAbI task id of the story, 1..20.
      story_index: which story of the task's test file, 0-based.
      output_dir: where the PNG files are written (created if needed).
      question: stop the story after this question (0-based); default the whole story.
      last_rows: show only the last ``last_rows`` steps as rows (default all).
      heads: ``"mean"``, ``"pairs"`` or a head index (`similarity_maps`).

    Returns:
      A dict: ``words`` (the story's tokens, the axes' labels), ``maps`` (name ->
      ``[len(words), len(words)]`` array), ``files`` (name -> PNG path), ``answers``
      (one ``(question words, answer, predicted)`` triple per question).
    """
    if task not in babi.TASK_NAMES:
        raise ValueError(f"`task` must be a bAbI task id in 1..20; received task={task!r}.")
    network = keras.saving.load_model(model_path, compile=False)
    embedding, recurrent, dense = _layers(network, model_path)
    vocabulary = load_vocabulary(model_path, data_dir, version)
    stories = babi.read_split(data_dir, version, "test", [task])
    if not 0 <= story_index < len(stories):
        raise ValueError(
            f"`story_index` must be in [0, {len(stories)}) for task {task}'s test file; "
            f"received story_index={story_index}."
        )
    story = truncate_story(stories[story_index], question)
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


def main(argv):
    del argv
    if not FLAGS.model_path or not FLAGS.data_dir:
        raise app.UsageError("--model_path and --data_dir are required.")
    heads = int(FLAGS.heads) if FLAGS.heads.lstrip("-").isdigit() else FLAGS.heads
    result = make_pictures(
        FLAGS.model_path,
        FLAGS.data_dir,
        version=FLAGS.version,
        task=FLAGS.task,
        story_index=FLAGS.story_index,
        output_dir=FLAGS.output_dir,
        question=FLAGS.question,
        last_rows=FLAGS.last_rows,
        heads=heads,
    )
    for question, answer, predicted in result["answers"]:
        print(f"{question}  answer: {answer}, predicted: {predicted}")
    for path in result["files"].values():
        print(f"wrote {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
