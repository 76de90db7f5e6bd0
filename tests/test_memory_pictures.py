"""examples/memory_pictures.py: figure-5 heat maps of a saved bAbI model on a real story."""

import json

import keras
import numpy as np
import pytest

from examples import babi as babi_example
from examples import memory_pictures
from mnm_keras.datasets import babi
from mnm_keras.memory_pictures import plot_similarity_map
from tests.babi_data import SHARED, needs_release

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """An untrained tiny examples/babi.py model, saved as training saves it."""
    model_dir = tmp_path_factory.mktemp("babi_model")
    vocabulary = babi.build_vocabulary(
        babi.read_split(SHARED, "en", "train") + babi.read_split(SHARED, "en", "test")
    )
    network = babi_example.build_model(len(vocabulary), "mnm_p", 8, 8, 4, 2, None, 0, 1e-3)
    network.save(model_dir / "model.keras")
    (model_dir / "vocabulary.json").write_text(json.dumps({"version": "en", "words": vocabulary}))
    return model_dir, network, vocabulary


@needs_release
def test_make_pictures_writes_three_maps_over_the_story(saved_model, tmp_path):
    model_dir, network, vocabulary = saved_model
    result = memory_pictures.make_pictures(
        str(model_dir / "model.keras"), SHARED, "en", task=1, story_index=2,
        output_dir=str(tmp_path / "pictures"),
    )  # fmt: skip
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


@needs_release
def test_make_pictures_question_window_and_errors(saved_model, tmp_path):
    model_dir, _, _ = saved_model
    model_path = str(model_dir / "model.keras")
    result = memory_pictures.make_pictures(
        model_path, SHARED, "en", task=1, story_index=0, output_dir=str(tmp_path),
        question=0, last_rows=5, heads=1,
    )  # fmt: skip
    words = result["words"]
    assert words[-2:] == ["?", "-"] and words.count("?") == 1
    assert all(m.shape == (len(words), len(words)) for m in result["maps"].values())
    with pytest.raises(ValueError, match="`version` must be the one the model was trained on"):
        memory_pictures.make_pictures(model_path, SHARED, "en-10k", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="`story_index` must be in"):
        memory_pictures.make_pictures(
            model_path, SHARED, "en", story_index=10**6, output_dir=str(tmp_path)
        )
    with pytest.raises(ValueError, match="`question` must be in"):
        memory_pictures.make_pictures(
            model_path, SHARED, "en", question=99, output_dir=str(tmp_path)
        )


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
