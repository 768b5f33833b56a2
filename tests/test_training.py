"""The plumbing around ``model.fit``: run folders that resume, refuse mixed recipes and lock, histories, models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from processes import kill_when

from unet_clustering import config, metrics, training, unet

SUBPROCESS_TIMEOUT_S = 300

#: The training pattern of notebook 03 on random data: start_run, then fit with the stock callbacks.
TRAIN_SCRIPT = """
import json
import sys
from pathlib import Path

import keras
import numpy as np

from unet_clustering import metrics, training, unet

folder, epochs, learning_rate = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
history_path, model_path = folder / "history.csv", folder / "unet.keras"
run = training.start_run(folder / "training", {"epochs": epochs, "learning_rate": learning_rate}, history_path)
keras.utils.set_random_seed(0)
random = np.random.default_rng(0)
images = random.random((64, 16, 16, 3), dtype=np.float32)
masks = (images[..., :1] > 0.5).astype(np.int32)
model = unet.build_unet(16, base_filters=4, depth=2)
model.compile(
    optimizer=keras.optimizers.AdamW(learning_rate),
    loss=metrics.ce_dice_loss,
    metrics=[metrics.ForegroundIoU()],
    jit_compile=False,
)
callbacks = [
    keras.callbacks.ModelCheckpoint(
        model_path, monitor="val_fg_iou", mode="max", save_best_only=True,
        initial_value_threshold=run.best_score,
    ),
    keras.callbacks.CSVLogger(history_path, append=True),
    keras.callbacks.BackupAndRestore(run.backup, double_checkpoint=True),
]
fitted = model.fit(
    images[:48], masks[:48], batch_size=2, validation_data=(images[48:], masks[48:]),
    epochs=epochs, callbacks=callbacks, verbose=0,
)
print(json.dumps({
    "message": run.message,
    "resumes": run.resumes_full_size,
    "epochs_this_call": len(fitted.history.get("loss", [])),
    "optimizer_steps": int(model.optimizer.iterations.numpy()),
}))
"""


def quiet_environment() -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")


def run_script(script: Path, *arguments: str) -> dict:
    finished = subprocess.run(
        [sys.executable, str(script), *arguments],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        env=quiet_environment(),
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(finished.stdout.strip().splitlines()[-1])


def history_rows(path: Path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(TRAIN_SCRIPT)
    return path


def test_a_killed_run_resumes_where_it_stopped_and_keeps_one_row_per_epoch(tmp_path, script):
    folder, epochs = tmp_path / "run", 6
    history = folder / "history.csv"
    kill_when(
        [sys.executable, str(script), str(folder), str(epochs), "0.01"],
        lambda: (folder / "training" / training.BACKUP_FOLDER).exists() and history_rows(history) >= 2,
        env=quiet_environment(),
        timeout_s=SUBPROCESS_TIMEOUT_S,
    )
    assert 2 <= history_rows(history) < epochs
    outcome = run_script(script, str(folder), str(epochs), "0.01")
    assert outcome["resumes"] is True and "Resuming" in outcome["message"]
    assert 0 < outcome["epochs_this_call"] < epochs
    # The optimizer went on from the backup instead of starting again at step 0.
    assert outcome["optimizer_steps"] == epochs * 24
    assert training.read_history(history)["epoch"] == list(range(epochs))
    assert not (folder / "training" / training.BACKUP_FOLDER).exists()
    assert (
        training.load_trained_model(folder / "unet.keras", image_size=16).output_shape[-1]
        == config.OXFORD_PET_CLASSES.num_classes
    )


def test_a_killed_run_started_again_with_other_settings_starts_fresh_and_says_so(tmp_path, script):
    folder = tmp_path / "run"
    history = folder / "history.csv"
    kill_when(
        [sys.executable, str(script), str(folder), "6", "0.01"],
        lambda: (folder / "training" / training.BACKUP_FOLDER).exists() and history_rows(history) >= 2,
        env=quiet_environment(),
        timeout_s=SUBPROCESS_TIMEOUT_S,
    )
    outcome = run_script(script, str(folder), "3", "0.02")
    assert outcome["resumes"] is False
    assert (
        "other settings (epochs, learning_rate)" in outcome["message"]
        and "starts fresh" in outcome["message"]
    )
    assert outcome["epochs_this_call"] == 3 and outcome["optimizer_steps"] == 3 * 24
    assert training.read_history(history)["epoch"] == [0, 1, 2]


def test_start_run_clears_the_logs_of_a_finished_run_and_keeps_those_it_resumes(tmp_path):
    folder, history = tmp_path / "training", tmp_path / "history.csv"
    history.write_text("epoch,loss,val_fg_iou\n0,1.0,0.5\n1,0.8,0.7\n")
    fresh = training.start_run(folder, {"a": 1}, history)
    assert fresh.message == "Starting a new run." and not history.exists() and fresh.best_score is None
    assert config.read_json(folder / training.RECIPE_FILE) == {"a": 1}

    history.write_text("epoch,loss,val_fg_iou\n0,1.0,0.5\n1,0.8,0.7\n1,0.9,0.6\n")
    fresh.backup.mkdir()
    unet.build_unet(16, base_filters=2, depth=1).save_weights(fresh.backup / "latest.weights.h5")
    resumed = training.start_run(folder, {"a": 1}, history)
    assert resumed.resumes_full_size and history.exists()
    # The best score of the epochs already trained, the repeated epoch's last row counting.
    assert resumed.best_score == pytest.approx(0.6)


def test_start_run_discards_backups_of_other_settings(tmp_path):
    folder, history = tmp_path / "training", tmp_path / "history.csv"
    training.start_run(folder, {"epochs": 5, "loss": "ce"}, history)
    for backup in (folder / training.BACKUP_FOLDER, folder / training.LOW_RES_BACKUP_FOLDER):
        backup.mkdir()
        (backup / "latest.weights.h5").write_bytes(b"x")
    run = training.start_run(folder, {"epochs": 5, "loss": "ce+dice"}, history)
    assert not run.resumes_full_size and "(loss)" in run.message
    assert (
        not (folder / training.BACKUP_FOLDER).exists()
        and not (folder / training.LOW_RES_BACKUP_FOLDER).exists()
    )


def test_start_run_drops_a_backup_cut_short_unless_its_previous_copy_is_readable(tmp_path):
    folder, history = tmp_path / "training", tmp_path / "history.csv"
    training.start_run(folder, {"a": 1}, history)
    backup = folder / training.BACKUP_FOLDER
    backup.mkdir()
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n")  # a kill while writing the first backup
    run = training.start_run(folder, {"a": 1}, history)
    assert not run.resumes_full_size and "cut short" in run.message and not backup.exists()

    backup.mkdir()
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n")
    unet.build_unet(16, base_filters=2, depth=1).save_weights(backup / "model.weights.h5")
    (backup / "model.weights.h5").rename(backup / "latest.weights.h5.bkp")
    assert training.start_run(folder, {"a": 1}, history).resumes_full_size


LOCK_SCRIPT = """
import sys, time
from unet_clustering import training
training.lock_run_folder(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_process_cannot_train_in_a_locked_run_folder(tmp_path):
    folder = tmp_path / "training"
    script = tmp_path / "lock.py"
    script.write_text(LOCK_SCRIPT)
    holder = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        checker = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from unet_clustering import training; training.lock_run_folder({str(folder)!r})",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checker.returncode != 0
        assert "RunLockedError" in checker.stderr and f"process {holder.pid}" in checker.stderr
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with its process: the folder is free again.
    training.lock_run_folder(folder)
    training.lock_run_folder(folder)  # and locking twice from one process is allowed


def test_read_history_keeps_the_last_row_of_a_repeated_epoch_and_reads_na_as_nan(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_fg_iou\n0,1.0,0.5\n1,0.9,NA\n1,0.8,0.7\n2,0.7,0.75\n")
    history = training.read_history(path)
    assert history["epoch"] == [0, 1, 2] and history["loss"] == [1.0, 0.8, 0.7]
    assert training.read_history(tmp_path / "missing.csv") == {}
    path.write_text("epoch,loss,val_fg_iou\n0,1.0,NA\n")
    assert np.isnan(training.read_history(path)["val_fg_iou"][0])


def test_load_trained_model_explains_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(tmp_path))
    with pytest.raises(config.MissingArtifactError, match="03_training.ipynb"):
        training.load_trained_model()


@pytest.mark.parametrize("content", [b"", b"not a zip file", None])
def test_load_trained_model_says_a_damaged_file_is_not_a_readable_model(tmp_path, content):
    path = tmp_path / "unet.keras"
    if content is None:  # a real model, cut short as by a kill during the save
        unet.build_unet(16, base_filters=2, depth=1).save(path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(training.IncompatibleModelError, match="not a readable Keras model"):
        training.load_trained_model(path)


def test_load_trained_model_refuses_other_classes_and_sizes(tmp_path):
    path = tmp_path / "unet.keras"
    unet.build_unet(16, num_classes=2, base_filters=2, depth=1).save(path)
    with pytest.raises(training.IncompatibleModelError, match="predicts 2 classes"):
        training.load_trained_model(path)
    unet.build_unet(16, base_filters=2, depth=1).save(path)
    with pytest.raises(training.IncompatibleModelError, match="trained on 16 px"):
        training.load_trained_model(path, image_size=32)


def test_a_model_saved_by_model_checkpoint_has_the_default_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        model = unet.build_unet(16, base_filters=2, depth=1)
        model.compile(
            optimizer="adam", loss=metrics.ce_dice_loss, metrics=[metrics.ForegroundIoU()], jit_compile=False
        )
        data = np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 16, 16, 1), np.int32)
        checkpoint = keras.callbacks.ModelCheckpoint(
            tmp_path / "unet.keras", monitor="val_fg_iou", mode="max"
        )
        model.fit(*data, validation_data=data, epochs=1, callbacks=[checkpoint], verbose=0)
    finally:
        os.umask(umask)
    assert (tmp_path / "unet.keras").stat().st_mode & 0o777 == 0o644
    assert sorted(path.name for path in tmp_path.iterdir()) == ["unet.keras"]


def test_configure_precision_is_float32_on_a_cpu():
    try:
        assert training.gpu_count() == 0
        assert training.configure_precision() == "float32"
        assert training.configure_precision("mixed_bfloat16") == "mixed_bfloat16"
        assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_two_fits_with_the_same_seed_agree(tmp_path):
    """On one machine, the same seed gives the same training (to float32 rounding)."""

    def train() -> list[np.ndarray]:
        keras.utils.set_random_seed(3)
        model = unet.build_unet(16, base_filters=2, depth=1)
        model.compile(optimizer="adam", loss=metrics.ce_dice_loss, jit_compile=False)
        random = np.random.default_rng(0)
        images = random.random((8, 16, 16, 3), dtype=np.float32)
        model.fit(images, (images[..., :1] > 0.5).astype(np.int32), batch_size=4, epochs=2, verbose=0)
        return model.get_weights()

    for first, second in zip(train(), train(), strict=True):
        np.testing.assert_allclose(first, second, rtol=1e-6, atol=1e-7)
