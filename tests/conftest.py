"""Shared fixtures (the data they build lives in synthetic_pets.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from synthetic_pets import make_pets_folder


@pytest.fixture(autouse=True)
def _no_dataset_folder_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their data themselves: a UNET_DATASET_DIR in the developer's shell is not theirs."""
    monkeypatch.delenv("UNET_DATASET_DIR", raising=False)


@pytest.fixture(scope="session")
def pets_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pets_folder(tmp_path_factory.mktemp("pets"))


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where prepared tfds copies of the synthetic folder go during the test session."""
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="session")
def bench_env(pets_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for running a bench/ script on the synthetic copy under the smoke profile."""
    return dict(
        os.environ,
        OXFORD_PETS_DIR=str(pets_folder),
        UNET_TFDS_DIR=str(tmp_path_factory.mktemp("bench-tfds")),
        UNET_PROFILE="smoke",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
