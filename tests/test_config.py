"""config.py: profiles, artifact paths and atomic writes."""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from unet_clustering import config


def test_profile_comes_from_the_argument_then_the_environment_then_quick(monkeypatch) -> None:
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    assert config.get_profile().name == "quick"
    monkeypatch.setenv(config.PROFILE_ENV, " SMOKE ")
    assert config.get_profile().name == "smoke"
    assert config.get_profile("full").name == "full"
    with pytest.raises(ValueError, match=r"Unknown profile 'huge'.*\['full', 'quick', 'smoke'\]"):
        config.get_profile("huge")


def test_profiles_grow_from_smoke_to_full() -> None:
    smoke, quick, full = (config.get_profile(name) for name in ("smoke", "quick", "full"))
    assert smoke.epochs < quick.epochs < full.epochs
    assert smoke.base_filters < quick.base_filters < full.base_filters
    for profile in (smoke, quick, full):
        assert profile.image_size % 2**profile.depth == 0  # the U-Net can take the size
        if profile.low_res_epochs:
            assert profile.low_res_image_size < profile.image_size
            assert profile.low_res_image_size % 2**profile.depth == 0


def test_the_low_resolution_phase_is_a_profile_of_its_own() -> None:
    profile = config.with_overrides(
        config.get_profile("quick"), low_res_image_size=32, low_res_epochs=7, low_res_learning_rate=5e-3
    )
    low = profile.low_res()
    assert (low.image_size, low.epochs, low.learning_rate) == (32, 7, 5e-3)
    assert low.batch_size == profile.batch_size and low.base_filters == profile.base_filters
    assert low.low_res_epochs == 0  # no phase within the phase
    # Without a rate of its own, the phase peaks at the profile's learning rate.
    assert (
        dataclasses.replace(profile, low_res_learning_rate=None).low_res().learning_rate
        == profile.learning_rate
    )
    with pytest.raises(ValueError, match="no low-resolution phase"):
        config.with_overrides(profile, low_res_epochs=0).low_res()


def test_overrides_change_only_the_given_fields() -> None:
    quick = config.get_profile("quick")
    changed = config.with_overrides(quick, epochs=3, batch_size=None)
    assert changed.epochs == 3 and changed.batch_size == quick.batch_size and quick.epochs != 3
    with pytest.raises(ValueError, match="no field"):
        config.with_overrides(quick, epoch=3)


def test_missing_artifact_names_the_notebook_that_makes_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(tmp_path))
    assert config.artifacts_dir() == tmp_path
    for name, maker in config.ARTIFACT_MAKERS.items():
        with pytest.raises(config.MissingArtifactError, match=maker):
            config.require_artifact(name)
    (tmp_path / "unet.keras").write_bytes(b"model")
    assert config.require_artifact("unet.keras") == tmp_path / "unet.keras"


def test_atomic_write_replaces_whole_files_with_ordinary_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    config.atomic_write_bytes(target, b"first")
    config.atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(path.name for path in target.parent.iterdir()) == ["file.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    config.atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        config.atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["file.bin"]


def test_json_round_trip_turns_numpy_values_into_plain_ones(tmp_path: Path) -> None:
    path = config.write_json(tmp_path / "report.json", {"score": np.float32(0.5), "counts": np.arange(3)})
    assert config.read_json(path) == {"score": 0.5, "counts": [0, 1, 2]}


def test_figures_go_to_images_only_for_real_runs_in_a_checkout(tmp_path: Path, monkeypatch) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "notebooks").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\n")
    monkeypatch.delenv(config.ARTIFACTS_ENV, raising=False)
    monkeypatch.chdir(checkout / "notebooks")
    assert config.figures_dir("quick") == checkout / "images"
    assert config.figures_dir("smoke") == checkout / "artifacts" / "figures"
    # A bare Colab session has no checkout: the figures stay beside the artifacts.
    bare = tmp_path / "content"
    bare.mkdir()
    monkeypatch.chdir(bare)
    assert config.figures_dir("full") == bare / "artifacts" / "figures"


def _fake_colab(monkeypatch, mount) -> None:
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mount)
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)


def test_keep_artifacts_on_drive_mounts_the_drive_and_points_the_artifacts_there(
    tmp_path, monkeypatch
) -> None:
    mounted = []
    _fake_colab(monkeypatch, mounted.append)
    monkeypatch.setenv(config.ARTIFACTS_ENV, "placeholder")
    monkeypatch.delenv(config.ARTIFACTS_ENV)  # restored after the test
    folder = tmp_path / "drive" / "artifacts"
    assert config.keep_artifacts_on_drive(str(folder)) == folder
    assert mounted == [config.COLAB_DRIVE_MOUNT]
    assert folder.is_dir() and os.environ[config.ARTIFACTS_ENV] == str(folder)
    # A folder the user chose wins.
    mine = tmp_path / "mine"
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(mine))
    assert config.keep_artifacts_on_drive(str(folder)) == mine


def test_keep_artifacts_on_drive_falls_back_to_this_machine_with_a_warning(tmp_path, monkeypatch) -> None:
    def decline(mount_point):
        raise ValueError("mount failed")

    _fake_colab(monkeypatch, decline)
    monkeypatch.setenv(config.ARTIFACTS_ENV, "placeholder")
    monkeypatch.delenv(config.ARTIFACTS_ENV)
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="Google Drive was not mounted.*mount failed"):
        folder = config.keep_artifacts_on_drive(str(tmp_path / "drive"))
    assert folder == tmp_path / "artifacts" and config.ARTIFACTS_ENV not in os.environ
    assert not (tmp_path / "drive").exists()
