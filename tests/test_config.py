"""config.py: profiles and how one is chosen, artifact paths, model fingerprints and atomic writes."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from unet_clustering import config


@pytest.fixture(autouse=True)
def artifacts_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes its artifacts under tmp_path, never into the checkout."""
    folder = tmp_path / "artifacts"
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(folder))
    return folder


@pytest.fixture()
def umask_022():
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def fake_command(folder: Path, name: str, script: str) -> Path:
    """An executable shell script called ``name`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def put_first_on_path(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")


# --------------------------------------------------------------------------------------------
# Profiles


def test_class_constants_follow_the_trimap_order() -> None:
    assert config.OXFORD_PET_CLASSES.names == ("pet", "background", "border")
    assert (config.PET, config.BACKGROUND, config.BORDER) == (0, 1, 2)
    assert config.OXFORD_PET_CLASSES.background == config.BACKGROUND
    assert config.OXFORD_PET_CLASSES.foreground == (config.PET, config.BORDER)


def test_classes_need_two_names_and_a_background_among_them() -> None:
    assert config.Classes(("sky", "road", "car", "person"), background=1).foreground == (0, 2, 3)
    for names, background in ((("only",), 0), (("a", "b"), 2), (("a", "b"), -1)):
        with pytest.raises(ValueError, match="background"):
            config.Classes(names, background)


def test_the_data_s_classes_are_what_01_recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(tmp_path))
    monkeypatch.delenv(config.DATASET_ENV, raising=False)
    assert config.dataset_classes() == config.OXFORD_PET_CLASSES and config.dataset_folder() is None
    monkeypatch.setenv(config.DATASET_ENV, str(tmp_path / "mine"))
    assert config.dataset_folder() == str(tmp_path / "mine")
    with pytest.raises(config.MissingArtifactError, match="01_data.ipynb"):
        config.dataset_classes()  # only 01_data finds a folder's classes
    record = {"folder": "/data/scans", "class_names": ["tissue", "tumour"], "background": 0}
    config.write_json(tmp_path / "dataset.json", record)
    assert config.dataset_classes() == config.Classes(("tissue", "tumour"), 0)
    assert config.dataset_folder() == "/data/scans"  # the record wins over the environment
    config.write_json(tmp_path / "dataset.json", {**record, "class_names": ["a", "b", "c"], "background": 2})
    assert config.dataset_classes().names == ("a", "b", "c")  # a new record is read again
    config.write_json(tmp_path / "dataset.json", {"class_names": ["pet", "background", "border"]})
    assert config.dataset_classes() == config.OXFORD_PET_CLASSES  # a record written before backgrounds


def test_profiles_are_named_by_their_keys_and_grow_from_smoke_to_full() -> None:
    assert set(config.PROFILES) == {"smoke", "quick", "full"}
    for key, profile in config.PROFILES.items():
        assert profile.name == key
        assert profile.image_size % 2**profile.depth == 0  # build_unet accepts the size
        if profile.low_res_image_size:
            assert profile.low_res_image_size < profile.image_size
            assert profile.low_res_image_size % 2**profile.depth == 0
    smoke, quick, full = (config.PROFILES[name] for name in ("smoke", "quick", "full"))
    assert smoke.train_images < quick.train_images < full.train_images
    assert smoke.base_filters < quick.base_filters < full.base_filters
    assert smoke.cluster_images < quick.cluster_images < full.cluster_images


@pytest.mark.parametrize("name", sorted(config.PROFILES))
def test_the_budget_in_images_holds_whatever_the_size_of_the_split(name: str) -> None:
    profile = config.PROFILES[name]
    for num_train in (32, 270, 300, 3_680, 6_614):
        epochs = profile.epochs(num_train)
        assert isinstance(epochs, int) and epochs >= 1
        if profile.train_images >= num_train / 2:
            # Rounding to whole epochs misses the budget by at most half an epoch.
            assert abs(epochs * num_train - profile.train_images) <= num_train / 2
        else:
            assert epochs == 1  # at least one pass over the data, even when the budget is smaller
    # The 300-image offline sample and the 3,680-image train split see about the same number of images.
    if profile.train_images >= 3_680:
        small, large = 300 * profile.epochs(300), 3_680 * profile.epochs(3_680)
        assert abs(small - large) <= 3_680 / 2


def test_epochs_by_hand() -> None:
    quick = config.PROFILES["quick"]  # 5,400 images at full size, 21,600 at low resolution
    assert (quick.epochs(270), quick.low_res_epochs(270)) == (20, 80)
    assert (quick.epochs(300), quick.low_res_epochs(300)) == (18, 72)
    assert (quick.epochs(3_680), quick.low_res_epochs(3_680)) == (1, 6)  # 5400 / 3680 = 1.47 -> 1
    assert quick.epochs(100_000) == 1
    full = config.PROFILES["full"]
    assert full.epochs(3_680) == 54  # 200,000 / 3,680 = 54.3
    assert full.low_res_epochs(3_680) == 0  # full trains at full size only
    smoke = config.PROFILES["smoke"]
    assert smoke.low_res_epochs(32) == 1 and smoke.low_res_epochs(1_000) == 1


def test_a_low_res_budget_without_a_low_res_size_means_no_low_res_phase() -> None:
    profile = config.Profile(
        name="custom",
        description="",
        image_size=64,
        batch_size=4,
        base_filters=4,
        depth=2,
        learning_rate=1e-3,
        train_images=100,
        low_res_train_images=400,
    )
    assert profile.low_res_epochs(100) == 0
    assert profile.epochs(100) == 1


def test_an_explicit_name_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.PROFILE_ENV, "smoke")
    profile, reason = config.choose_profile("full")
    assert profile is config.PROFILES["full"]
    assert reason.startswith("set by PROFILE_NAME")
    # Case and surrounding spaces do not matter.
    assert config.choose_profile(" Quick ")[0] is config.PROFILES["quick"]


def test_the_environment_wins_over_the_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_command(tmp_path / "bin", "nvidia-smi", 'echo "GPU 0: NVIDIA H200 (UUID: GPU-0000)"\n')
    put_first_on_path(monkeypatch, tmp_path / "bin")
    monkeypatch.setenv(config.PROFILE_ENV, " SMOKE ")
    profile, reason = config.choose_profile()
    assert profile is config.PROFILES["smoke"]
    assert reason.startswith(f"set by ${config.PROFILE_ENV}")
    # An empty name is no name: the environment still decides.
    assert config.choose_profile("")[0] is config.PROFILES["smoke"]


def test_a_visible_gpu_makes_full_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls.txt"
    fake_command(
        tmp_path / "bin",
        "nvidia-smi",
        f'echo "$@" >> "{calls}"\necho "GPU 0: NVIDIA H200 (UUID: GPU-0000)"\n',
    )
    put_first_on_path(monkeypatch, tmp_path / "bin")
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    assert config.gpu_available() is True
    profile, reason = config.choose_profile()
    assert profile is config.PROFILES["full"]
    assert "GPU is visible" in reason
    assert calls.read_text().split() == ["-L", "-L"]  # asked to list the GPUs, once per call


@pytest.mark.parametrize(
    "script",
    [
        # The driver is missing: nvidia-smi exists but fails.
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver" >&2\nexit 9\n',
        # It fails with a message that names a GPU: the exit status, not the text, decides.
        'echo "Failed to initialize NVML: GPU access blocked by the operating system"\nexit 255\n',
        # It runs but lists no GPU.
        'echo "No devices were found"\n',
    ],
    ids=["fails", "fails-naming-a-gpu", "lists-nothing"],
)
def test_an_nvidia_smi_without_a_gpu_leaves_quick_the_default(
    script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_command(tmp_path / "bin", "nvidia-smi", script)
    put_first_on_path(monkeypatch, tmp_path / "bin")
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    assert config.gpu_available() is False
    profile, reason = config.choose_profile()
    assert profile is config.PROFILES["quick"]
    assert "no GPU" in reason


def test_without_nvidia_smi_the_default_is_quick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # whatever this machine has, no nvidia-smi is found
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    assert config.gpu_available() is False
    assert config.choose_profile()[0] is config.PROFILES["quick"]
    assert config.get_profile() is config.PROFILES["quick"]


@pytest.mark.parametrize("name", [None, "smoke"])
def test_the_reason_says_how_to_override_the_choice(
    name: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    _, reason = config.choose_profile(name)
    assert "PROFILE_NAME" in reason and f"${config.PROFILE_ENV}" in reason
    for profile_name in config.PROFILES:
        assert profile_name in reason


def test_unknown_profiles_are_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    with pytest.raises(ValueError, match=r"Unknown profile 'huge'.*\['full', 'quick', 'smoke'\]"):
        config.choose_profile("huge")
    monkeypatch.setenv(config.PROFILE_ENV, "medium")
    with pytest.raises(ValueError, match=rf"Unknown profile 'medium' \(set by \${config.PROFILE_ENV}\)"):
        config.get_profile()


def test_get_profile_is_the_profile_choose_profile_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.PROFILE_ENV, "smoke")
    assert config.get_profile() is config.choose_profile()[0] is config.PROFILES["smoke"]
    assert config.get_profile("full") is config.PROFILES["full"]


def test_split_sizes_by_hand() -> None:
    smoke, quick = config.PROFILES["smoke"], config.PROFILES["quick"]
    # smoke caps the train split at 40 and keeps 20% of it (8) for validation; test capped at 16.
    assert config.split_sizes(3_680, 3_669, smoke) == {"train": 32, "validation": 8, "test": 16}
    # quick keeps 10% for validation, at most 300 of them, and the whole test split.
    assert config.split_sizes(3_680, 3_669, quick) == {"train": 3_380, "validation": 300, "test": 3_669}
    assert config.split_sizes(300, 300, quick) == {"train": 270, "validation": 30, "test": 300}
    # Fewer examples than a cap: all of them are used.
    assert config.split_sizes(10, 5, smoke) == {"train": 8, "validation": 2, "test": 5}
    with pytest.raises(ValueError, match="too few"):
        config.split_sizes(1, 5, quick)


# --------------------------------------------------------------------------------------------
# Artifacts


def test_artifacts_live_in_the_folder_of_the_environment_variable(artifacts_in_tmp: Path) -> None:
    assert config.artifacts_dir() == artifacts_in_tmp and artifacts_in_tmp.is_dir()
    for key, (file_name, _) in config.ARTIFACTS.items():
        assert config.artifact(key) == artifacts_in_tmp / file_name
    with pytest.raises(KeyError, match="No artifact 'weights'.*'model'"):
        config.artifact("weights")


def test_without_the_variable_artifacts_go_to_the_checkout_or_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(config.ARTIFACTS_ENV)
    checkout = tmp_path / "checkout"
    (checkout / "notebooks").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\n")
    monkeypatch.chdir(checkout / "notebooks")
    assert config.artifacts_dir(create=False) == checkout / "artifacts"
    assert not (checkout / "artifacts").exists()  # create=False creates nothing
    assert config.artifact("model") == checkout / "artifacts" / "unet.keras"
    assert (checkout / "artifacts").is_dir()
    # A bare Colab session has no checkout: ./artifacts.
    bare = tmp_path / "content"
    bare.mkdir()
    monkeypatch.chdir(bare)
    assert config.artifacts_dir() == bare / "artifacts"


def test_a_missing_artifact_names_the_notebook_that_makes_it(artifacts_in_tmp: Path) -> None:
    for key, (file_name, maker) in config.ARTIFACTS.items():
        with pytest.raises(config.MissingArtifactError, match=rf"Run notebooks/{maker} first") as raised:
            config.require_artifact(key)
        assert isinstance(raised.value, FileNotFoundError)
        message = str(raised.value)
        assert str(artifacts_in_tmp / file_name) in message and config.ARTIFACTS_ENV in message
        if maker in config.NOTEBOOK_TIME:
            assert config.NOTEBOOK_TIME[maker] in message  # how long the expensive notebook takes


def test_an_artifact_that_exists_is_returned(artifacts_in_tmp: Path) -> None:
    config.artifact("model").write_bytes(b"model")
    assert config.require_artifact("model") == artifacts_in_tmp / "unet.keras"
    config.artifact("figures").mkdir()  # folder artifacts count as well
    assert config.require_artifact("figures") == artifacts_in_tmp / "figures"


def test_file_sha256_is_the_digest_of_the_whole_file(tmp_path: Path) -> None:
    payload = np.random.default_rng(0).bytes(int(2.5 * (1 << 20)))  # several 1 MiB chunks
    path = tmp_path / "model.bin"
    path.write_bytes(payload)
    assert config.file_sha256(path) == hashlib.sha256(payload).hexdigest()
    path.write_bytes(payload[:-1] + bytes([payload[-1] ^ 1]))  # one bit of the last chunk
    assert config.file_sha256(path) != hashlib.sha256(payload).hexdigest()


def test_check_same_model_accepts_the_model_and_refuses_another(tmp_path: Path) -> None:
    model, other = tmp_path / "unet.keras", tmp_path / "other.keras"
    model.write_bytes(b"trained weights")
    other.write_bytes(b"retrained weights")
    record = {"model_sha256": config.file_sha256(model)}
    config.check_same_model(record, model, "features")  # no error
    with pytest.raises(config.StaleArtifactError, match=r"notebooks/04_feature_extraction\.ipynb again"):
        config.check_same_model(record, other, "features")
    with pytest.raises(config.StaleArtifactError, match=r"notebooks/05_clustering\.ipynb"):
        config.check_same_model(record, other, "clustering")
    # A record that does not say which model made it cannot be trusted.
    with pytest.raises(config.StaleArtifactError):
        config.check_same_model({}, model, "features")


# --------------------------------------------------------------------------------------------
# Writing files


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path: Path, umask_022) -> None:
    target = tmp_path / "new" / "folder" / "file.bin"
    assert config.atomic_write_bytes(target, b"first version") == target
    config.atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [path.name for path in target.parent.iterdir()] == ["file.bin"]
    # Default permissions (what open() gives under umask 022), not mkstemp's owner-only 0600.
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_write_follows_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        path = config.atomic_write_bytes(tmp_path / "private.bin", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    config.atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        config.atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["file.bin"]


def test_concurrent_writers_never_share_a_temporary_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "features.npz"
    payloads = [bytes([index]) * 300_000 for index in (1, 2)]
    # Both writers wait, each holding its written temporary file, until the other has one too.
    both_written = threading.Barrier(2, timeout=30)
    temporaries: list[Path] = []
    original = config.give_default_permissions

    def give_permissions_when_both_are_written(path: Path) -> None:
        temporaries.append(Path(path))
        both_written.wait()
        original(path)

    monkeypatch.setattr(config, "give_default_permissions", give_permissions_when_both_are_written)
    errors: list[BaseException] = []

    def write(payload: bytes) -> None:
        try:
            config.atomic_write_bytes(target, payload)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    writers = [threading.Thread(target=write, args=(payload,)) for payload in payloads]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    assert not errors, errors
    assert len(temporaries) == 2 and temporaries[0] != temporaries[1]
    assert all(path.parent == tmp_path and path.name != target.name for path in temporaries)
    # One complete payload won; no temporary is left behind.
    assert target.read_bytes() in payloads
    assert [path.name for path in tmp_path.iterdir()] == [target.name]


def test_json_round_trip_turns_numpy_values_and_paths_into_plain_json(tmp_path: Path) -> None:
    content = {
        "score": np.float32(0.5),
        "count": np.int64(7),
        "counts": np.arange(3),
        "model": tmp_path / "unet.keras",
        "nested": {"matrix": np.eye(2, dtype=np.int32)},
    }
    path = config.write_json(tmp_path / "report.json", content)
    assert config.read_json(path) == {
        "score": 0.5,
        "count": 7,
        "counts": [0, 1, 2],
        "model": str(tmp_path / "unet.keras"),
        "nested": {"matrix": [[1, 0], [0, 1]]},
    }
    with pytest.raises(TypeError, match="Cannot write object as JSON"):
        config.write_json(tmp_path / "bad.json", {"value": object()})
    assert not (tmp_path / "bad.json").exists()


# --------------------------------------------------------------------------------------------
# Colab


def _fake_colab(monkeypatch: pytest.MonkeyPatch, mount) -> None:
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mount)
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)


def test_keep_artifacts_on_drive_mounts_the_drive_and_points_the_artifacts_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounted = []
    _fake_colab(monkeypatch, mounted.append)
    monkeypatch.delenv(config.ARTIFACTS_ENV)  # set by the autouse fixture, so restored after the test
    folder = tmp_path / "drive" / "artifacts"
    assert config.keep_artifacts_on_drive(str(folder)) == folder
    assert mounted == [config.COLAB_DRIVE_MOUNT]
    assert folder.is_dir() and os.environ[config.ARTIFACTS_ENV] == str(folder)
    # A folder the user chose wins.
    mine = tmp_path / "mine"
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(mine))
    assert config.keep_artifacts_on_drive(str(folder)) == mine


def test_keep_artifacts_on_drive_falls_back_to_this_machine_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def decline(mount_point: str) -> None:
        raise ValueError("mount failed")

    _fake_colab(monkeypatch, decline)
    monkeypatch.delenv(config.ARTIFACTS_ENV)
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="Google Drive was not mounted.*mount failed"):
        folder = config.keep_artifacts_on_drive(str(tmp_path / "drive"))
    assert folder == tmp_path / "artifacts" and config.ARTIFACTS_ENV not in os.environ
    assert not (tmp_path / "drive").exists()
