"""examples/dictionary_memory.py: its diagnostics agree with the model and the memory."""

import os

import numpy as np
import pytest

from examples import algorithmic, dictionary_memory
from mnm_keras.datasets.algorithmic import DictionaryInference

SIZES = dict(units=8, memory_units=6, memory_layers=2, key_size=6, num_heads=1)


RUN = dict(
    task="dictionary",
    model="mnm_g",
    support_size=3,
    sequence_length=2,
    train_steps=2,
    steps_per_epoch=1,
    batch_size=4,
    eval_episodes=8,
    normalize_writes=True,
    **SIZES,
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("run"))
    algorithmic.run(algorithmic.Config(model_dir=model_dir, **RUN), verbose=0)
    return model_dir


def test_answer_error_is_the_models_and_writes_lower_their_own_recall_error(run_dir):
    diagnosis = dictionary_memory.run(dictionary_memory.Config(run_dir, episodes=16, seed=3))
    result = diagnosis["results"]
    # The network is rebuilt from the run record's config.
    assert diagnosis["run"]["memory_layers"] == 2 and diagnosis["run"]["support_size"] == 3
    assert diagnosis["config"] == {"model_dir": run_dir, "episodes": 16, "seed": 3}
    task = DictionaryInference(3, 2)
    network = algorithmic.build_model(task, algorithmic.Config(model_dir=run_dir, **RUN))
    network.optimizer.build(network.trainable_variables)
    network.load_weights(os.path.join(run_dir, "backup", "latest.weights.h5"))
    inputs, targets, weights = task.arrays(16, seed=3)
    predicted = network.predict(inputs.astype("float32"), verbose=0).argmax(-1)
    answers = weights > 0
    assert result["error"] == pytest.approx(np.mean(predicted[answers] != targets[answers]))
    assert 0.0 <= result["swapped_error"] <= 1.0
    # A normalised MNM-g write is a descent step on its own pair's recall error.
    assert 0.0 < result["written"] < 0.95
    assert result["kept"] > 0.0
    wrong = (predicted[answers] != targets[answers]).reshape(16, 2)
    assert result["sequence_error"] == pytest.approx(np.mean(wrong.any(1)))
    for name in ("error_by_occurrences", "error_by_last_example"):
        groups = result[name]
        assert sum(count for count, _ in groups.values()) == 32
        total = sum(count * rate for count, rate in groups.values())
        assert total == pytest.approx(np.sum(wrong))
    assert min(result["error_by_occurrences"]) >= 1  # queries use support letters
    text = dictionary_memory.summary(diagnosis)
    assert text.startswith(f"{run_dir} (16 episodes, seed 3)")
    assert f"| {result['written']:.3f} | {result['kept']:.3f} |" in text


def test_query_letter_context_on_a_written_episode():
    task = DictionaryInference(3, 2)
    EOS, SEP, EOSS, ANS = task.EOS, task.SEP, task.EOSS, task.ANSWER
    # Sources (0, 1), (2, 0), (3, 3); query (0, 3). Translations are irrelevant here.
    symbols = [0, 1, EOS, 10, 11, SEP, 2, 0, EOS, 12, 10, SEP, 3, 3, EOS, 13, 13, EOSS]
    symbols += [0, 3, EOS, ANS, ANS]
    inputs = np.eye(task.input_size)[np.array(symbols)][None]
    occurrences, last_example = dictionary_memory.query_letter_context(inputs, task)
    np.testing.assert_array_equal(occurrences, [[2, 2]])
    np.testing.assert_array_equal(last_example, [[2, 3]])
    groups = dictionary_memory.error_by([1, 2, 2, 3], [True, False, True, False])
    assert groups == {1: (1, 1.0), 2: (2, 0.5), 3: (1, 0.0)}


def test_rejects_a_run_without_memory_and_a_config_that_makes_no_sense(tmp_path):
    config = algorithmic.Config(
        model_dir=str(tmp_path),
        model="lstm",
        train_steps=1,
        steps_per_epoch=1,
        batch_size=4,
        eval_episodes=4,
        units=8,
    )
    algorithmic.run(config, verbose=0)
    with pytest.raises(ValueError, match="`model_dir` must hold an MNM run.*model='lstm'"):
        dictionary_memory.run(dictionary_memory.Config(str(tmp_path)))
    with pytest.raises(ValueError, match="`model_dir` is required"):
        dictionary_memory.Config()
    with pytest.raises(ValueError, match="`episodes` must be at least 2"):
        dictionary_memory.Config(str(tmp_path), episodes=1)
