"""Where the tests find the bAbI release: ../shared/data/babi beside the project."""

import os

import pytest

SHARED = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "..",
    "shared",
    "data",
    "babi",
    "tasks_1-20_v1-2",
)
needs_release = pytest.mark.skipif(
    not os.path.isdir(SHARED), reason="the bAbI release is not beside the project (../shared)"
)
