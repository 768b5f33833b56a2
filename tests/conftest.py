"""Shared fixtures (the data they build lives in synthetic_pets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_pets import make_pets_folder


@pytest.fixture(scope="session")
def pets_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pets_folder(tmp_path_factory.mktemp("pets"))


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where prepared tfds copies of the synthetic folder go during the test session."""
    return tmp_path_factory.mktemp("tfds")
