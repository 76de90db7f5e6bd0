"""A TFDS builder of word-level bAbI over a manual directory (TFDS cannot download bAbI).

    import tensorflow_datasets as tfds
    from mnm_keras.datasets.babi_tfds import Babi

    builder = Babi(config="en-10k", data_dir="~/tensorflow_datasets")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir="/path/to/tasks_1-20_v1-2")
    )
    train = builder.as_dataset(split="train")

Every example is one story of one task: ``task`` (1..20), ``tokens`` (the story's words with
a ``-`` placeholder per answer word after each question), ``answers`` (one word per
placeholder, in order) and ``answer_positions`` (the placeholders' indices in ``tokens``).
Splits: ``train`` and ``validation`` (a seeded 10% of each task's training stories) and
``test`` (the official test files).
"""

from __future__ import annotations

import numpy as np

from mnm_keras.datasets import babi

try:
    # Optional (the ``babi`` extra): this module's builder subclasses a TFDS class, so the
    # import cannot wait until a function runs; nothing else in mnm_keras imports it.
    import tensorflow_datasets as tfds
except ImportError as error:
    raise ImportError(
        "mnm_keras.datasets.babi_tfds needs tensorflow-datasets: pip install 'mnm_keras[babi]'"
    ) from error


class Babi(tfds.core.GeneratorBasedBuilder):
    """bAbI tasks 1-20 (v1.2, English), word level, from a manual directory."""

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {"1.2.0": "bAbI tasks_1-20_v1-2, word-level stories."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="en", description="1k training questions per task"),
        tfds.core.BuilderConfig(name="en-10k", description="10k training questions per task"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download {babi.OFFICIAL_RELEASE}, unpack it, and pass the folder that contains en/ "
        "and en-10k/ as `download_config=tfds.download.DownloadConfig(manual_dir=...)`."
    )

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "task": np.int32,
                    "tokens": tfds.features.Sequence(tfds.features.Text()),
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "answer_positions": tfds.features.Sequence(np.int32),
                }
            ),
            homepage="https://research.facebook.com/downloads/babi/",
            citation=(
                "@article{weston2015towards, title={Towards AI-Complete Question Answering: A "
                "Set of Prerequisite Toy Tasks}, author={Weston, Jason and Bordes, Antoine and "
                'Chopra, Sumit and Rush, Alexander M and van Merri{\\"e}nboer, Bart and '
                "Joulin, Armand and Mikolov, Tomas}, journal={arXiv:1502.05698}, year={2015}}"
            ),
        )

    def _split_generators(self, dl_manager):
        data_dir = str(dl_manager.manual_dir)
        version = self.builder_config.name
        babi.check_release(data_dir, version)  # lists the missing files and the source
        train, validation = babi.split_train(babi.read_split(data_dir, version, "train"))
        test = babi.read_split(data_dir, version, "test")
        return {
            "train": self._generate_examples(train),
            "validation": self._generate_examples(validation),
            "test": self._generate_examples(test),
        }

    def _generate_examples(self, stories):
        for index, story in enumerate(stories):
            positions = [p for ps, _ in story.answers for p in ps]
            words = [w for _, ws in story.answers for w in ws]
            yield (
                index,
                {
                    "task": story.task,
                    "tokens": story.tokens,
                    "answers": words,
                    "answer_positions": positions,
                },
            )
