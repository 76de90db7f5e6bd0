"""examples/memory_pictures.py: figure-5 heat maps of a saved bAbI model on a real story."""

import json

import keras
import numpy as np
import pytest

from examples import babi as babi_example
from examples import memory_pictures
from examples.plotting import plot_similarity_map
from mnm_keras.datasets import babi
from tests.babi_data import SHARED, needs_release

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """An untrained tiny examples/babi.py model, saved as training saves it."""
    model_dir = tmp_path_factory.mktemp("babi_model")
    vocabulary = babi.build_vocabulary(
        babi.read_split(SHARED, "en", "train") + babi.read_split(SHARED, "en", "test")
    )
    config = babi_example.Config(
        data_dir=SHARED, model="mnm_p", units=8, memory_units=8, key_size=4, num_heads=2
    )
    network = babi_example.build_model(len(vocabulary), config)
    network.save(model_dir / "model.keras")
    (model_dir / "vocabulary.json").write_text(json.dumps({"version": "en", "words": vocabulary}))
    return model_dir, network, vocabulary


@needs_release
def test_run_writes_three_maps_over_the_story(saved_model, tmp_path):
    model_dir, network, vocabulary = saved_model
    # The version is the one the model was trained on (its vocabulary.json).
    result = memory_pictures.run(
        memory_pictures.Config(
            str(model_dir), SHARED, task=1, story_index=2, output_dir=str(tmp_path / "pictures")
        )
    )
    story = babi.read_split(SHARED, "en", "test", [1])[2]
    assert result["words"] == story.tokens
    assert set(result["files"]) == {
        "read_vs_written",
        "written_vs_written",
        "write_keys_vs_write_keys",
    }
    for name, path in result["files"].items():
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC
        assert result["maps"][name].shape == (len(story.tokens), len(story.tokens))
    # the traced outputs are the model's: same predicted answers as the whole model
    logits = np.asarray(network(babi.encode(story, vocabulary)[0][None]))[0]
    assert len(result["answers"]) == len(story.answers) == 5
    for (question, answer, predicted), (positions, words) in zip(result["answers"], story.answers):
        assert question.startswith("where is ") and question.endswith(" ?")
        assert answer == ",".join(words)
        assert predicted == ",".join(vocabulary[i] for i in logits[positions].argmax(-1))
    text = memory_pictures.summary(result)
    assert text.count("answer: ") == 5 and text.count("wrote ") == 3


@needs_release
def test_question_window_and_errors(saved_model, tmp_path):
    model_dir, _, _ = saved_model

    def pictures(**fields):
        return memory_pictures.run(memory_pictures.Config(str(model_dir), SHARED, **fields))

    # No output_dir: the model_dir's pictures/.
    result = pictures(version="en", task=1, story_index=0, question=0, last_rows=5, heads="1")
    words = result["words"]
    assert words[-2:] == ["?", "-"] and words.count("?") == 1
    assert all(m.shape == (len(words), len(words)) for m in result["maps"].values())
    assert all(path.startswith(str(model_dir / "pictures")) for path in result["files"].values())
    out = str(tmp_path)
    with pytest.raises(ValueError, match="`version` must be the one the model was trained on"):
        pictures(version="en-10k", output_dir=out)
    with pytest.raises(ValueError, match="`story_index` must be in"):
        pictures(story_index=10**6, output_dir=out)
    with pytest.raises(ValueError, match="`question` must be in"):
        pictures(question=99, output_dir=out)
    with pytest.raises(ValueError, match="`last_rows` must be in"):
        pictures(last_rows=10**6, output_dir=out)
    with pytest.raises(FileNotFoundError, match="vocabulary.json"):
        memory_pictures.run(memory_pictures.Config(str(tmp_path), SHARED))


@pytest.mark.parametrize(
    "field, value",
    [("task", 21), ("story_index", -1), ("question", -2), ("last_rows", 0), ("heads", "max")],
)
def test_a_config_that_makes_no_sense_is_refused_by_name(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"`{field}`.*{value}"):
        memory_pictures.Config(str(tmp_path), str(tmp_path), **{field: value})
    with pytest.raises(ValueError, match="`data_dir` is required"):
        memory_pictures.Config(str(tmp_path))


def test_plot_similarity_map_labels_every_word(tmp_path):
    words = ["mary", "went", "to", "the", "office", "."]
    matrix = np.where(np.tri(6, 6, -1, dtype=bool), np.linspace(-1, 1, 36).reshape(6, 6), np.nan)
    path = tmp_path / "map.png"
    figure = plot_similarity_map(str(path), matrix, words, "t", rows=(2, 6))
    axes = figure.axes[0]
    assert [label.get_text() for label in axes.get_xticklabels()] == words
    assert [label.get_text() for label in axes.get_yticklabels()] == words[2:]
    image = keras.utils.load_img(path)
    assert image.size[0] > 100 and image.size[1] > 100
    with pytest.raises(ValueError, match="`words` must hold one word per step"):
        plot_similarity_map(str(path), matrix, words[:-1])
    with pytest.raises(ValueError, match="`rows` must be"):
        plot_similarity_map(str(path), matrix, words, rows=(3, 9))
