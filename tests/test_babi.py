"""bAbI reader: word-level conventions, edge cases on small files, and the real release."""

import numpy as np
import pytest

from mnm_keras.datasets import babi
from tests.babi_data import SHARED, needs_release


def write(tmp_path, text, name="qa8_lists-sets_train.txt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_story_boundaries_placeholders_and_multi_word_answers(tmp_path):
    path = write(
        tmp_path,
        "1 Mary got the milk there.\n"
        "2 What is Mary carrying? \tmilk\t1\n"
        "3 Mary took the apple.\n"
        "4 What is Mary carrying? \tmilk,apple\t1 3\n"
        "1 John went to the kitchen.\n"
        "2 What is John carrying? \tnothing\t1\n",
    )
    first, second = babi.parse_file(path, task=8)
    assert first.tokens[:6] == ["mary", "got", "the", "milk", "there", "."]
    assert first.tokens[6:11] == ["what", "is", "mary", "carrying", "?"]
    assert first.tokens[11] == "-"
    assert first.answers[0] == ([11], ["milk"])
    positions, words = first.answers[1]
    assert words == ["milk", "apple"] and [first.tokens[p] for p in positions] == ["-", "-"]
    assert positions[-1] == len(first.tokens) - 1
    assert second.tokens[0] == "john" and second.answers == [([11], ["nothing"])]

    vocabulary = babi.build_vocabulary([first, second])
    assert vocabulary[0] == "<pad>"
    inputs, targets, weights = babi.encode(first, vocabulary)
    assert inputs.shape == targets.shape == weights.shape == (len(first.tokens),)
    assert weights.sum() == 3 and np.all(inputs[weights == 1] == vocabulary.index("-"))
    assert [vocabulary[t] for t in targets[weights == 1]] == ["milk", "milk", "apple"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 Mary moved.\nx Where is Mary? \tkitchen\t1\n", "line 2: expected 'ID text'"),
        ("1 Mary moved.\n3 John moved.\n", "line 2: line ID 3 does not follow 1"),
        ("1 Mary moved.\n2 Where is Mary? \tkitchen\n", "line 2: a question line must be"),
        ("1 Mary moved.\n2 Where is Mary? \t\t1\n", "line 2: a question line must be"),
    ],
)
def test_malformed_lines_name_the_file_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(babi.BabiFormatError, match=message) as error:
        babi.parse_file(path, task=1)
    assert path in str(error.value)


def test_missing_release_lists_files_and_the_official_source(tmp_path):
    (tmp_path / "en-10k").mkdir()
    with pytest.raises(FileNotFoundError) as error:
        babi.read_split(str(tmp_path), "en-10k", "train", tasks=[1, 2])
    text = str(error.value)
    assert "2 bAbI file(s) missing" in text
    assert "qa1_single-supporting-fact_train.txt" in text and "qa2_two-supporting-facts" in text
    assert "tasks_1-20_v1-2" in text and "https://research.facebook.com/downloads/babi/" in text
    with pytest.raises(ValueError, match="`version` must be one of"):
        babi.check_release(str(tmp_path), version="hn")


@needs_release
def test_real_release_vocabulary_is_159_words():
    stories = []
    for version in babi.VERSIONS:
        for split in ("train", "test"):
            stories += babi.read_split(SHARED, version, split)
    vocabulary = babi.build_vocabulary(stories)
    assert len(vocabulary) - 1 == 159  # without <pad>: 156 words + "." "?" "-"
    assert {".", "?", "-"} <= set(vocabulary)
    for version in babi.VERSIONS:
        assert babi.release_vocabulary(SHARED, version) == vocabulary


@needs_release
def test_real_release_task_facts():
    test = babi.read_split(SHARED, "en", "test", tasks=[1, 3, 19])
    questions = {t: sum(len(s.answers) for s in test if s.task == t) for t in (1, 3, 19)}
    assert questions == {1: 1000, 3: 1000, 19: 1000}
    path_answers = {len(w) for s in test if s.task == 19 for _, w in s.answers}
    assert path_answers == {2}  # two directions each
    longest = max(len(s.tokens) for s in test if s.task == 3)
    assert 1000 < longest < 1500  # task 3 stories reach about 1,400 tokens


@needs_release
def test_bucketing_keeps_every_story_and_cuts_padding():
    stories = babi.read_split(SHARED, "en", "test", tasks=[1, 2, 3])
    vocabulary = babi.build_vocabulary(stories)
    plain = babi.make_dataset(stories, vocabulary, batch_size=32, shuffle_seed=0)
    boundaries = babi.length_buckets([len(s.tokens) for s in stories])
    bucketed = babi.make_dataset(stories, vocabulary, 32, boundaries, shuffle_seed=0)
    before, after = babi.padding_fraction(plain), babi.padding_fraction(bucketed)
    assert after < 0.5 * before, (before, after)
    # Same stories, same answers: only the grouping and the padding differ.
    plain_weights = sum(float(np.asarray(w).sum()) for _, _, w in plain)
    bucketed_weights = sum(float(np.asarray(w).sum()) for _, _, w in bucketed)
    assert plain_weights == bucketed_weights == sum(len(ws) for s in stories for _, ws in s.answers)
    for inputs, _, _ in bucketed:
        assert inputs.shape[1] in [b - 1 for b in boundaries]  # padded to its bucket
    # The declared number of batches is the real one (Keras relies on it for validation).
    assert int(bucketed.cardinality()) == sum(1 for _ in bucketed)
    assert int(plain.cardinality()) == sum(1 for _ in plain)


def test_tfds_builder_prepares_offline(tmp_path):
    import tensorflow_datasets as tfds

    from mnm_keras.datasets.babi_tfds import Babi

    release = tmp_path / "release"
    (release / "en").mkdir(parents=True)
    story = "1 Mary moved to the kitchen.\n2 Where is Mary? \tkitchen\t1\n"
    for task, name in babi.TASK_NAMES.items():
        for split in ("train", "test"):
            (release / "en" / f"qa{task}_{name}_{split}.txt").write_text(story * 10)
    builder = Babi(config="en", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(release))
    )
    splits = {k: v.num_examples for k, v in builder.info.splits.items()}
    assert splits == {"train": 180, "validation": 20, "test": 200}
    example = next(iter(builder.as_dataset(split="test")))
    assert [t.decode() for t in example["tokens"].numpy()][-1] == "-"
    assert example["answers"].numpy().tolist() == [b"kitchen"]

    missing = Babi(config="en-10k", data_dir=str(tmp_path / "tfds2"))
    with pytest.raises(FileNotFoundError, match="40 bAbI file"):
        missing.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(release))
        )
