"""Tests of ``training``: schedules, callbacks, fitting, resuming a killed run, distribution, loading.

Models are tiny U-Nets (16 px, 2 base filters, depth 2) trained on synthetic images whose mask
is a pixel-wise function of the red channel, so a few steps already learn something. Runs that
must start a fresh TensorFlow (a run killed half-way, two logical CPUs) go to subprocesses.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from processes import kill_when

from unet_clustering import config, metrics, training, unet

IMAGE_SIZE = 16
BATCH_SIZE = 4
NUM_TRAIN = 16
NUM_VALIDATION = 8
EPOCHS = 3
LEARNING_RATE = 1e-2
SEED = 7
#: A generous limit for each subprocess; nothing asserts how long they take.
SUBPROCESS_TIMEOUT_S = 180


def synthetic_split(count: int, seed: int, image_size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Random images (N, S, S, 3) in [0, 1] and masks (N, S, S, 1): red > 0.6 is pet, < 0.3 background."""
    random = np.random.default_rng(seed)
    images = random.random((count, image_size, image_size, 3), dtype=np.float32)
    red = images[..., :1]
    masks = np.where(red > 0.6, config.PET, np.where(red < 0.3, config.BACKGROUND, config.BORDER))
    return images, masks.astype(np.int32)


def batched(images: np.ndarray, masks: np.ndarray):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((images, masks)).batch(BATCH_SIZE)


def tiny_model(image_size: int = IMAGE_SIZE, num_classes: int = config.NUM_CLASSES) -> keras.Model:
    return unet.build_unet(image_size=image_size, num_classes=num_classes, base_filters=2, depth=2)


def stamp(model: keras.Model, value: float) -> None:
    """Mark a model's version by filling its ``logits`` kernel with ``value``."""
    kernel = model.get_layer("logits").kernel
    kernel.assign(np.full(kernel.shape, value, dtype="float32"))


def stamp_of(model: keras.Model) -> float:
    kernel = keras.ops.convert_to_numpy(model.get_layer("logits").kernel)
    assert np.all(kernel == kernel.flat[0])
    return float(kernel.flat[0])


def leftovers(folder: Path) -> list[str]:
    """Temporary files (hidden or ``.tmp``) that an atomic write may have left behind."""
    return sorted(
        entry.name for entry in folder.iterdir() if entry.name.startswith(".") or ".tmp" in entry.name
    )


def train_tiny(run_dir: Path, backup: bool = True) -> tuple[keras.Model, training.FitResult]:
    """Build (seeded), compile and fit the tiny model on the synthetic data: the same run every time."""
    keras.utils.set_random_seed(SEED)
    model = tiny_model()
    steps_per_epoch = math.ceil(NUM_TRAIN / BATCH_SIZE)
    training.compile_model(model, LEARNING_RATE, total_steps=EPOCHS * steps_per_epoch)
    result = training.fit(
        model,
        batched(*synthetic_split(NUM_TRAIN, seed=0)),
        batched(*synthetic_split(NUM_VALIDATION, seed=1)),
        epochs=EPOCHS,
        num_train_examples=NUM_TRAIN,
        run_dir=run_dir,
        seed=SEED,
        verbose=0,
        backup=backup,
    )
    return model, result


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp("run")
    model, result = train_tiny(run_dir)
    return run_dir, model, result


@pytest.fixture
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def run_python(script: Path, *arguments: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), *arguments],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        env=quiet_environment(),
        **options,
    )


def quiet_environment() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def last_json_line(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Learning-rate schedules and compilation


def cosine_expected(step: float, peak: float, total: int, warmup: int) -> float:
    """The cosine schedule written out: linear from peak/10 to peak, then cosine to 1 % of peak."""
    if step < warmup:
        return peak / 10 + (peak - peak / 10) * step / warmup
    progress = min(step - warmup, total - warmup) / (total - warmup)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def schedule_value(schedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_cosine_schedule_warms_up_then_decays_to_one_percent():
    schedule = training.learning_rate_schedule("cosine", 0.01, total_steps=200)
    warmup = 10  # the default 5 % of 200 steps
    assert schedule_value(schedule, 0) == pytest.approx(0.001, rel=1e-5)
    assert schedule_value(schedule, warmup) == pytest.approx(0.01, rel=1e-5)
    assert schedule_value(schedule, 105) == pytest.approx(0.01 * (0.01 + 0.99 * 0.5), rel=1e-5)
    assert schedule_value(schedule, 200) == pytest.approx(1e-4, rel=1e-4)
    assert schedule_value(schedule, 500) == pytest.approx(1e-4, rel=1e-4)
    for step in (3, 7, 42, 150, 199):
        assert schedule_value(schedule, step) == pytest.approx(
            cosine_expected(step, 0.01, 200, warmup), rel=1e-5
        )
    values = [schedule_value(schedule, step) for step in range(0, 201, 5)]
    peak_index = values.index(max(values))
    assert peak_index == warmup // 5
    assert np.all(np.diff(values[: peak_index + 1]) > 0) and np.all(np.diff(values[peak_index:]) < 0)


def test_cosine_schedule_without_warm_up_starts_at_the_peak():
    schedule = training.learning_rate_schedule("cosine", 0.02, total_steps=50, warmup_fraction=0.0)
    assert schedule_value(schedule, 0) == pytest.approx(0.02, rel=1e-6)
    assert schedule_value(schedule, 50) == pytest.approx(2e-4, rel=1e-4)


def test_one_cycle_peaks_after_the_warm_up_and_ends_at_peak_over_final_division():
    schedule = training.learning_rate_schedule("one-cycle", 0.01, total_steps=100)
    assert isinstance(schedule, training.OneCycle)
    assert schedule.warmup_fraction == 0.3
    assert schedule_value(schedule, 0) == pytest.approx(0.01 / 25, rel=1e-5)
    assert schedule_value(schedule, 15) == pytest.approx(0.01 / 25 + (0.01 - 0.01 / 25) / 2, rel=1e-5)
    assert schedule_value(schedule, 30) == pytest.approx(0.01, rel=1e-6)
    # Half-way through the decay the cosine sits half-way between the peak and the end value.
    assert schedule_value(schedule, 65) == pytest.approx((0.01 + 1e-6) / 2, rel=1e-5)
    assert schedule_value(schedule, 100) == pytest.approx(0.01 / 1e4, rel=1e-3)
    values = [schedule_value(schedule, step) for step in range(101)]
    assert int(np.argmax(values)) == 30


def test_one_cycle_follows_the_warmup_fraction_it_is_given():
    schedule = training.learning_rate_schedule("one-cycle", 0.01, total_steps=100, warmup_fraction=0.5)
    values = [schedule_value(schedule, step) for step in range(101)]
    assert int(np.argmax(values)) == 50


def test_constant_schedule_is_the_learning_rate():
    assert training.learning_rate_schedule("constant", 3e-4, total_steps=10) == 3e-4


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kind": "linear"}, "schedule must be one of .*'linear'"),
        ({"total_steps": 0}, "total_steps must be at least 1; got 0"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"warmup_fraction": 1.0}, r"warmup_fraction must be in \[0, 1\); got 1.0"),
        ({"warmup_fraction": -0.1}, "warmup_fraction must be in"),
    ],
)
def test_learning_rate_schedule_rejects_bad_arguments(arguments, message):
    chosen = {"kind": "cosine", "learning_rate": 1e-3, "total_steps": 100, **arguments}
    with pytest.raises(ValueError, match=message):
        training.learning_rate_schedule(**chosen)


def test_one_cycle_config_round_trip():
    schedule = training.OneCycle(
        0.05, total_steps=40, warmup_fraction=0.25, start_division=10.0, final_division=100.0
    )
    copy = training.OneCycle.from_config(schedule.get_config())
    assert copy.get_config() == schedule.get_config()
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(revived, training.OneCycle)
    for step in (0, 5, 10, 25, 40):
        assert schedule_value(revived, step) == pytest.approx(schedule_value(schedule, step), rel=1e-6)
    assert schedule_value(schedule, 0) == pytest.approx(0.005, rel=1e-6)
    assert schedule_value(schedule, 40) == pytest.approx(0.0005, rel=1e-4)


def test_compile_model_uses_adamw_with_the_schedule_and_no_xla_on_cpu():
    model = training.compile_model(tiny_model(), 0.01, total_steps=100, schedule="one-cycle", loss="ce")
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    # Before the first step the optimizer's learning rate is the schedule's start value.
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(
        0.01 / 25, rel=1e-5
    )
    if training.accelerators()["gpu"] == 0:
        assert model.jit_compile is False


# --------------------------------------------------------------------------------------------
# Fitting


def test_fit_writes_the_model_history_and_state(trained_run):
    run_dir, _, result = trained_run
    assert sorted(entry.name for entry in run_dir.iterdir()) == sorted(
        [training.MODEL_FILE, training.HISTORY_FILE, training.STATE_FILE]
    )
    with (run_dir / training.HISTORY_FILE).open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS))
    for column in ("loss", "fg_iou", "fg_dice", "mean_iou", "pet_dice", "pixel_accuracy"):
        assert column in rows[0] and f"val_{column}" in rows[0]
    state = config.read_json(run_dir / training.STATE_FILE)
    assert state == {"best": result.best_score, "best_epoch": result.best_epoch, "monitor": training.MONITOR}


def test_fit_result_agrees_with_the_history(trained_run):
    run_dir, _, result = trained_run
    history = training.read_history(run_dir / training.HISTORY_FILE)
    assert result.history == history
    assert result.epochs == EPOCHS and history["epoch"] == [0.0, 1.0, 2.0]
    assert result.resumed is False
    assert result.model_path == run_dir / training.MODEL_FILE
    assert result.train_s > 0 and result.images_per_s > 0
    assert 1 <= result.best_epoch <= EPOCHS
    assert result.best_score == pytest.approx(max(history["val_fg_iou"]), rel=1e-7)
    # best_epoch counts from 1; the first of equal scores wins.
    assert result.best_epoch == int(np.argmax(history["val_fg_iou"])) + 1
    # Three epochs on an easy task: the training loss goes down.
    assert history["loss"][-1] < history["loss"][0]


def test_saved_model_is_the_best_epoch_and_scores_what_was_logged(trained_run):
    run_dir, _, result = trained_run
    model = training.load_trained_model(run_dir / training.MODEL_FILE, image_size=IMAGE_SIZE)
    scores = metrics.evaluate(model, synthetic_split(NUM_VALIDATION, seed=1), batch_size=BATCH_SIZE)
    assert scores["fg_iou"] == pytest.approx(result.best_score, abs=1e-6)


def test_two_fits_with_the_same_seed_are_identical(trained_run, tmp_path):
    _, first_model, first = trained_run
    second_model, second = train_tiny(tmp_path)
    assert second.history == first.history
    for first_weights, second_weights in zip(
        first_model.get_weights(), second_model.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(first_weights, second_weights)


def test_fit_and_load_without_a_run_dir_trains_the_same_and_leaves_nothing_behind(
    trained_run, tmp_path, monkeypatch
):
    _, _, kept = trained_run
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(tmp_path / "artifacts"))
    monkeypatch.setattr(training.tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    backups = spy_on_backups(monkeypatch)
    model = tiny_model()
    training.compile_model(model, LEARNING_RATE, total_steps=EPOCHS * math.ceil(NUM_TRAIN / BATCH_SIZE))
    result, best = training.fit_and_load(
        model,
        batched(*synthetic_split(NUM_TRAIN, seed=0)),
        batched(*synthetic_split(NUM_VALIDATION, seed=1)),
        epochs=EPOCHS,
        num_train_examples=NUM_TRAIN,
        image_size=IMAGE_SIZE,
        seed=SEED,
        verbose=0,
    )
    assert result.history == kept.history
    scores = metrics.evaluate(best, synthetic_split(NUM_VALIDATION, seed=1), batch_size=BATCH_SIZE)
    assert scores["fg_iou"] == pytest.approx(result.best_score, abs=1e-6)
    assert not (tmp_path / "artifacts").exists() and not any((tmp_path / "scratch").iterdir())
    # The folder is deleted afterwards, so nothing could resume from a backup: none is written.
    assert backups == []


def spy_on_backups(monkeypatch) -> list[str]:
    """Record the folder of every weights file ``training.save_weights_atomically`` writes."""
    written: list[str] = []
    original = training.save_weights_atomically

    def recording(model, path):
        written.append(Path(path).parent.name)
        return original(model, path)

    monkeypatch.setattr(training, "save_weights_atomically", recording)
    return written


def test_fit_backs_up_every_epoch_unless_told_not_to(tmp_path, monkeypatch):
    backups = spy_on_backups(monkeypatch)
    train_tiny(tmp_path / "kept")
    assert backups == [training.BACKUP_FOLDER] * EPOCHS
    backups.clear()
    # Without backups, a backup left in the folder is not resumed either.
    run_dir = tmp_path / "scratch"
    (run_dir / training.BACKUP_FOLDER).mkdir(parents=True)
    (run_dir / training.BACKUP_FOLDER / "training_metadata.json").write_text('{"epoch": 1, "batch": -1}')
    _, result = train_tiny(run_dir, backup=False)
    assert backups == [] and result.resumed is False and result.epochs == EPOCHS
    kinds = [
        type(callback) for callback in training.make_callbacks(run_dir, run_dir / "unet.keras", backup=False)
    ]
    assert training.AtomicBackupAndRestore not in kinds and training.BestModelCheckpoint in kinds


def test_write_metrics_report(trained_run, tmp_path):
    _, model, result = trained_run
    profile = config.with_overrides(config.get_profile("smoke"), image_size=IMAGE_SIZE, epochs=EPOCHS)
    data_description = {"image_size": IMAGE_SIZE, "counts": {"train": NUM_TRAIN, "test": 5}}
    test_metrics = {"fg_iou": 0.5, "mean_iou": 0.25}
    path = training.write_metrics_report(
        test_metrics,
        profile,
        result,
        data_description,
        model,
        path=tmp_path / "metrics.json",
        extra={"note": "x"},
    )
    report = json.loads(path.read_text())
    assert report["test_metrics"] == test_metrics
    assert report["profile"] == profile.to_dict()
    assert report["image_size"] == IMAGE_SIZE
    assert report["epochs"] == EPOCHS
    assert report["best_epoch"] == result.best_epoch
    assert report["train_s"] == round(result.train_s, 1)
    assert report["data"] == data_description
    assert report["evaluated_on"].startswith(f"5 test images at {IMAGE_SIZE} px")
    assert report["model"]["parameters"] == model.count_params()
    assert report["note"] == "x"
    assert leftovers(tmp_path) == []


def test_read_history_keeps_the_last_row_of_a_repeated_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_fg_iou\r\n0,2.0,0.1\r\n1,1.5,NA\r\n0,1.9,0.2\r\n2,1.0,0.4\r\n")
    history = training.read_history(path)
    assert history["epoch"] == [0.0, 1.0, 2.0]
    assert history["loss"] == [1.9, 1.5, 1.0]
    assert history["val_fg_iou"][0] == 0.2 and math.isnan(history["val_fg_iou"][1])
    assert training.read_history(tmp_path / "absent.csv") == {}


# --------------------------------------------------------------------------------------------
# Callbacks and atomic saving


def test_best_model_checkpoint_saves_only_improvements(tmp_path):
    model = tiny_model()
    path, state_path = tmp_path / "unet.keras", tmp_path / "training_state.json"
    checkpoint = training.BestModelCheckpoint(path, state_path)
    checkpoint.set_model(model)
    checkpoint.on_train_begin()

    def epoch(index: int, score: float, version: float) -> None:
        stamp(model, version)
        checkpoint.on_epoch_end(index, {"loss": 1.0, "val_fg_iou": score})

    epoch(0, 0.5, version=1.0)
    assert stamp_of(training.load_trained_model(path)) == 1.0
    assert config.read_json(state_path) == {"best": 0.5, "best_epoch": 1, "monitor": "val_fg_iou"}
    saved_bytes = path.read_bytes()

    epoch(1, 0.4, version=2.0)  # worse
    epoch(2, 0.5, version=3.0)  # a tie is no improvement
    assert path.read_bytes() == saved_bytes
    assert config.read_json(state_path)["best_epoch"] == 1

    epoch(3, 0.7, version=4.0)
    assert stamp_of(training.load_trained_model(path)) == 4.0
    assert (checkpoint.best, checkpoint.best_epoch) == (0.7, 4)
    assert config.read_json(state_path) == {"best": 0.7, "best_epoch": 4, "monitor": "val_fg_iou"}
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["training_state.json", "unet.keras"]


def test_best_model_checkpoint_names_the_missing_monitor(tmp_path):
    checkpoint = training.BestModelCheckpoint(tmp_path / "unet.keras", tmp_path / "state.json")
    checkpoint.set_model(tiny_model())
    with pytest.raises(KeyError, match=r"'val_fg_iou' is not among the logged values \['fg_iou', 'loss'\]"):
        checkpoint.on_epoch_end(0, {"loss": 1.0, "fg_iou": 0.3})
    assert not (tmp_path / "unet.keras").exists()


def test_best_model_checkpoint_resumes_from_the_stored_best(tmp_path):
    model = tiny_model()
    path, state_path = tmp_path / "unet.keras", tmp_path / "training_state.json"
    stamp(model, 1.0)
    training.save_model_atomically(model, path)
    config.write_json(state_path, {"best": 0.8, "best_epoch": 5, "monitor": "val_fg_iou"})

    resumed = training.BestModelCheckpoint(path, state_path, resume=True)
    resumed.set_model(model)
    resumed.on_train_begin()
    assert (resumed.best, resumed.best_epoch) == (0.8, 5)
    stamp(model, 2.0)
    resumed.on_epoch_end(5, {"val_fg_iou": 0.6})
    assert stamp_of(training.load_trained_model(path)) == 1.0
    resumed.on_epoch_end(6, {"val_fg_iou": 0.9})
    assert stamp_of(training.load_trained_model(path)) == 2.0
    assert config.read_json(state_path)["best_epoch"] == 7

    # Without resume the stored best is ignored: a fresh run saves its first epoch.
    fresh = training.BestModelCheckpoint(path, state_path, resume=False)
    fresh.set_model(model)
    fresh.on_train_begin()
    stamp(model, 3.0)
    fresh.on_epoch_end(0, {"val_fg_iou": 0.1})
    assert stamp_of(training.load_trained_model(path)) == 3.0
    assert leftovers(tmp_path) == []


def test_save_model_atomically_keeps_the_old_file_when_saving_fails(tmp_path, monkeypatch):
    model = tiny_model()
    path = tmp_path / "unet.keras"
    stamp(model, 1.0)
    training.save_model_atomically(model, path)
    saved_bytes = path.read_bytes()

    def broken_save(filepath, *arguments, **options):
        Path(filepath).write_bytes(b"half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", broken_save)
    stamp(model, 2.0)
    with pytest.raises(OSError, match="disk full"):
        training.save_model_atomically(model, path)
    assert path.read_bytes() == saved_bytes
    assert stamp_of(training.load_trained_model(path)) == 1.0
    assert [entry.name for entry in tmp_path.iterdir()] == ["unet.keras"]


def test_callbacks_back_up_last_and_check_backup_every_steps(tmp_path):
    callbacks = training.make_callbacks(tmp_path, tmp_path / "unet.keras", patience=2)
    kinds = [type(callback) for callback in callbacks]
    assert kinds[-1] is training.AtomicBackupAndRestore
    # An epoch's row and best model are written before the backup marks the epoch as done.
    assert kinds.index(training.BestModelCheckpoint) < len(kinds) - 1
    assert kinds.index(keras.callbacks.CSVLogger) < len(kinds) - 1
    assert keras.callbacks.EarlyStopping in kinds
    with pytest.raises(ValueError, match="backup_every_steps must be a positive number of steps.*got 0"):
        training.make_callbacks(tmp_path, tmp_path / "unet.keras", backup_every_steps=0)


def test_backup_is_not_broken_by_a_failed_write(tmp_path, monkeypatch):
    model = training.compile_model(tiny_model(), 1e-3, total_steps=10)
    model.optimizer.build(model.trainable_variables)
    backup_folder = tmp_path / training.BACKUP_FOLDER
    backup = training.make_callbacks(tmp_path, tmp_path / "unet.keras")[-1]
    backup.set_model(model)
    stamp(model, 1.0)
    backup.on_epoch_end(0)
    names = sorted(entry.name for entry in backup_folder.iterdir())

    original_save_weights = model.save_weights

    def dies_half_way(filepath, *arguments, **options):
        Path(filepath).write_bytes(b"half an HDF5 file")
        raise OSError("killed")

    monkeypatch.setattr(model, "save_weights", dies_half_way)
    stamp(model, 2.0)
    with pytest.raises(OSError, match="killed"):
        backup.on_epoch_end(1)
    monkeypatch.setattr(model, "save_weights", original_save_weights)
    assert sorted(entry.name for entry in backup_folder.iterdir()) == names

    # A new run restores the intact backup of epoch 0.
    restored = training.compile_model(tiny_model(), 1e-3, total_steps=10)
    restoring = training.make_callbacks(tmp_path, tmp_path / "unet.keras")[-1]
    restoring.set_model(restored)
    restoring.on_train_begin()
    assert stamp_of(restored) == 1.0


# --------------------------------------------------------------------------------------------
# A run killed half-way resumes (subprocess)

RESUMABLE_SCRIPT = """
import json
import sys
import time

import keras
import numpy as np

from unet_clustering import training, unet

run_dir, epochs, delay_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
BATCH = 4


class SlowImages(keras.utils.PyDataset):
    # Sleeps before each batch so that the test has time to kill the run half-way.
    def __init__(self, count, seed):
        super().__init__()
        random = np.random.default_rng(seed)
        self.images = random.random((count, 16, 16, 3), dtype=np.float32)
        self.masks = np.where(self.images[..., :1] > 0.5, 0, 1).astype(np.int32)

    def __len__(self):
        return len(self.images) // BATCH

    def __getitem__(self, index):
        time.sleep(delay_s)
        return self.images[BATCH * index : BATCH * (index + 1)], self.masks[BATCH * index : BATCH * (index + 1)]


keras.utils.set_random_seed(0)
train = SlowImages(16, seed=0)
model = unet.build_unet(image_size=16, base_filters=2, depth=2)
training.compile_model(model, learning_rate=1e-2, total_steps=len(train) * epochs)
result = training.fit(
    model, train, SlowImages(8, seed=1), epochs=epochs, num_train_examples=16, run_dir=run_dir,
    verbose=0, backup_every_steps=1,
)
print(json.dumps({
    "resumed": result.resumed,
    "epochs": result.epochs,
    "history_epochs": result.history["epoch"],
    "epochs_this_call": len(model.history.history["loss"]),
    "steps_per_epoch": len(train),
    "optimizer_steps": int(model.optimizer.iterations),
}))
"""


def history_rows(path: Path) -> int:
    if not path.exists():
        return 0
    return max(0, len(path.read_text().splitlines()) - 1)


def test_a_killed_run_resumes_and_finishes_its_epochs(tmp_path):
    script = tmp_path / "train_tiny.py"
    script.write_text(RESUMABLE_SCRIPT)
    run_dir = tmp_path / "run"
    epochs = 3
    command = [sys.executable, str(script), str(run_dir), str(epochs), "0.1"]
    backup_folder, history_path = run_dir / training.BACKUP_FOLDER, run_dir / training.HISTORY_FILE

    kill_when(
        command,
        lambda: backup_folder.exists() and history_rows(history_path) >= 1,
        env=quiet_environment(),
        timeout_s=SUBPROCESS_TIMEOUT_S,
    )
    assert backup_folder.exists() and history_rows(history_path) < epochs

    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, env=quiet_environment()
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    outcome = last_json_line(finished.stdout)
    assert outcome["resumed"] is True
    assert outcome["epochs"] == epochs
    assert outcome["history_epochs"] == list(range(epochs))
    # The optimizer went on from the backup instead of starting again from step 0.
    assert outcome["optimizer_steps"] > outcome["epochs_this_call"] * outcome["steps_per_epoch"]

    with history_path.open(newline="") as stream:
        assert [int(row["epoch"]) for row in csv.DictReader(stream)] == list(range(epochs))
    assert not backup_folder.exists()
    model = training.load_trained_model(run_dir / training.MODEL_FILE, image_size=16)
    assert model.output_shape == (None, 16, 16, config.NUM_CLASSES)
    assert leftovers(run_dir) == []


# --------------------------------------------------------------------------------------------
# MirroredStrategy over two logical CPUs (subprocess: devices are set before TensorFlow starts)

MIRRORED_SCRIPT = """
import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import numpy as np

from unet_clustering import config, metrics, training

run_dir = sys.argv[1]
profile = config.with_overrides(
    config.get_profile("smoke"), image_size=32, base_filters=4, depth=2, epochs=1, batch_size=4
)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
random = np.random.default_rng(0)
images = random.random((16, 32, 32, 3), dtype=np.float32)
# The validation batch splits into images 12-13 (replica 0) and 14-15 (replica 1). Making the
# first pair all background and the second all pet gives the two replicas very different
# counts, so averaging their IoUs would not give the IoU of the summed counts.
images[12:14, ..., 0] *= 0.5
images[14:16, ..., 0] = 0.5 + 0.5 * images[14:16, ..., 0]
masks = np.where(images[..., :1] > 0.5, 0, 1).astype(np.int32)
train = tf.data.Dataset.from_tensor_slices((images[:12], masks[:12])).batch(profile.batch_size)
validation = tf.data.Dataset.from_tensor_slices((images[12:], masks[12:])).batch(profile.batch_size)
keras.utils.set_random_seed(0)
model = training.build_for_profile(profile, 12, strategy=strategy)
result = training.fit(
    model, train, validation, epochs=profile.epochs, num_train_examples=12, run_dir=run_dir, verbose=0
)
logits = model.predict(validation, verbose=0)
halves = [metrics.confusion_matrix(masks[start : start + 2], logits[start - 12 : start - 10]) for start in (12, 14)]
print(json.dumps({
    "num_replicas_in_sync": strategy.num_replicas_in_sync,
    "replicas": training.replicas(strategy),
    "model_strategy": type(model.distribute_strategy).__name__,
    "loss": result.history["loss"][-1],
    "val_fg_iou": result.history["val_fg_iou"][-1],
    "summed_fg_iou": metrics.foreground_iou(halves[0] + halves[1]),
    "mean_of_replica_fg_iou": (metrics.foreground_iou(halves[0]) + metrics.foreground_iou(halves[1])) / 2,
}))
"""


def test_mirrored_strategy_over_two_cpus(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    finished = run_python(script, str(run_dir))
    assert finished.returncode == 0, finished.stderr[-3000:]
    outcome = last_json_line(finished.stdout)
    assert outcome["num_replicas_in_sync"] == 2 and outcome["replicas"] == 2
    assert outcome["model_strategy"] == "MirroredStrategy"
    assert math.isfinite(outcome["loss"])
    # The logged validation IoU comes from the counts of both replicas added up.
    assert outcome["val_fg_iou"] == pytest.approx(outcome["summed_fg_iou"], abs=1e-6)
    assert abs(outcome["mean_of_replica_fg_iou"] - outcome["summed_fg_iou"]) > 1e-3
    model = training.load_trained_model(run_dir / training.MODEL_FILE, image_size=32)
    assert model.output_shape == (None, 32, 32, config.NUM_CLASSES)


# --------------------------------------------------------------------------------------------
# Loading a trained model


def test_load_trained_model_explains_a_missing_file(tmp_path, monkeypatch):
    with pytest.raises(config.MissingArtifactError, match="03_training.ipynb"):
        training.load_trained_model(tmp_path / "unet.keras")
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(tmp_path / "artifacts"))
    with pytest.raises(config.MissingArtifactError, match="03_training.ipynb"):
        training.load_trained_model()


def test_load_trained_model_rejects_a_corrupt_file(tmp_path):
    path = tmp_path / "unet.keras"
    path.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(training.IncompatibleModelError, match="03_training.ipynb"):
        training.load_trained_model(path)


def test_load_trained_model_rejects_other_classes_and_sizes(tmp_path):
    two_classes = training.save_model_atomically(tiny_model(num_classes=2), tmp_path / "two.keras")
    with pytest.raises(training.IncompatibleModelError, match="predicts 2 classes, not the 3"):
        training.load_trained_model(two_classes)
    small = training.save_model_atomically(tiny_model(image_size=IMAGE_SIZE), tmp_path / "small.keras")
    with pytest.raises(
        training.IncompatibleModelError, match=r"trained on 16 px images but this run uses 32 px"
    ):
        training.load_trained_model(small, image_size=32)
    loaded = training.load_trained_model(small, image_size=IMAGE_SIZE)
    assert loaded.output_shape == (None, IMAGE_SIZE, IMAGE_SIZE, config.NUM_CLASSES)


# --------------------------------------------------------------------------------------------
# Devices and precision


def test_configure_precision_auto_is_float32_on_a_cpu(float32_policy):
    if training.accelerators()["gpu"]:
        pytest.skip("a GPU is present: auto picks mixed precision")
    assert training.configure_precision("auto") == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"


def test_configure_precision_sets_the_global_policy(float32_policy):
    assert training.configure_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    model = tiny_model()
    # The logits stay float32 whatever the policy.
    assert keras.backend.standardize_dtype(model.output.dtype) == "float32"


def test_accelerators_and_the_default_strategy_on_a_cpu():
    found = training.accelerators()
    assert set(found) == {"gpu", "tpu"}
    if found["gpu"] or found["tpu"]:
        pytest.skip("an accelerator is present")
    assert found == {"gpu": 0, "tpu": 0}
    assert training.replicas(training.default_strategy()) == 1
    assert training.replicas(None) == 1


# --------------------------------------------------------------------------------------------
# The pretrained-encoder option of 03_training (ENCODER = "mobilenetv2")


def test_build_for_profile_takes_the_mobilenetv2_encoder_and_notebooks_04_05_can_use_it(tmp_path):
    from unet_clustering import features

    profile = config.with_overrides(
        config.get_profile("smoke"), image_size=64, base_filters=4, epochs=1, batch_size=4
    )
    plain = training.build_for_profile(profile, 8, seed=0)
    assert len(unet.encoder_stage_names(plain)) == profile.depth + 1
    # MobileNetV2's depth is fixed: the profile's depth must not reach it.
    model = training.build_for_profile(profile, 8, seed=0, encoder="mobilenetv2", pretrained=False)
    assert unet.encoder_stage_names(model) == [f"enc{stage}" for stage in range(1, 6)] + ["bottleneck"]
    assert isinstance(model.get_layer("mobilenetv2_encoder"), keras.Model)

    random = np.random.default_rng(0)
    images = random.random((8, 64, 64, 3), dtype=np.float32)
    masks = random.integers(0, config.NUM_CLASSES, size=(8, 64, 64)).astype(np.int32)
    history = model.fit(images, masks, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    model.save(tmp_path / training.MODEL_FILE)

    loaded = training.load_trained_model(tmp_path / training.MODEL_FILE, image_size=64)
    extractor = features.feature_extractor(loaded, unet.model_stage_names(loaded))
    stages = unet.encoder_stage_names(loaded)
    representations, num_empty = features.segment_representations(
        extractor, images, masks == config.PET, stages, statistics=("std",)
    )
    inner = features.INNER_ENCODER_REPRESENTATION + features.WITH_COLOUR
    assert num_empty == 0 and representations[inner].shape[0] == len(images)
    assert np.isfinite(representations[inner]).all()


LOW_RES_SIZE = 8
LOW_RES_EPOCHS = 2


def low_res_profile(**changes) -> config.Profile:
    """The tiny model's settings as a profile with a low-resolution phase of 8 px."""
    settings = {
        "image_size": IMAGE_SIZE,
        "base_filters": 2,
        "depth": 2,
        "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "low_res_image_size": LOW_RES_SIZE,
        "low_res_epochs": LOW_RES_EPOCHS,
    }
    return config.with_overrides(config.get_profile("smoke"), **{**settings, **changes})


def fit_low_res_tiny(run_dir: Path, profile: config.Profile, seed: int = SEED):
    model = tiny_model()
    result = training.fit_low_res(
        model,
        batched(*synthetic_split(NUM_TRAIN, seed=0, image_size=LOW_RES_SIZE)),
        batched(*synthetic_split(NUM_VALIDATION, seed=1, image_size=LOW_RES_SIZE)),
        profile,
        num_train_examples=NUM_TRAIN,
        run_dir=run_dir,
        seed=seed,
        verbose=0,
    )
    return model, result


def test_fit_low_res_trains_a_small_twin_and_copies_its_weights(tmp_path):
    untrained = tiny_model()
    model, result = fit_low_res_tiny(tmp_path, low_res_profile())
    folder = tmp_path / training.LOW_RES_FOLDER
    assert result.epochs == LOW_RES_EPOCHS and not result.resumed
    assert result.model_path == folder / training.LOW_RES_WEIGHTS_FILE and result.model_path.exists()
    assert len(result.history["val_fg_iou"]) == LOW_RES_EPOCHS
    # The model keeps its full-size input; only its weights come from the twin.
    assert model.input_shape[1:3] == (IMAGE_SIZE, IMAGE_SIZE)
    assert any(
        not np.array_equal(before, after)
        for before, after in zip(untrained.get_weights(), model.get_weights(), strict=True)
    )
    twin = unet.build_unet(image_size=LOW_RES_SIZE, base_filters=2, depth=2)
    twin.load_weights(str(result.model_path))
    for saved, copied in zip(twin.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, copied)
    # Nothing is left of the twin's own checkpointing but its history and the record.
    assert not (folder / training.MODEL_FILE).exists() and not (folder / training.BACKUP_FOLDER).exists()
    assert sorted(entry.name for entry in folder.iterdir()) == sorted(
        [
            training.HISTORY_FILE,
            training.STATE_FILE,
            training.LOW_RES_WEIGHTS_FILE,
            training.LOW_RES_RECORD_FILE,
        ]
    )
    assert not (tmp_path / training.MODEL_FILE).exists()


def test_fit_low_res_reuses_a_finished_phase_only_for_the_same_settings(tmp_path, monkeypatch):
    first_model, first = fit_low_res_tiny(tmp_path, low_res_profile())
    calls = []
    real_fit = training.fit
    monkeypatch.setattr(training, "fit", lambda *args, **kwargs: calls.append(1) or real_fit(*args, **kwargs))

    again_model, again = fit_low_res_tiny(tmp_path, low_res_profile())
    assert again.resumed and not calls
    assert (again.epochs, again.best_epoch, again.history) == (first.epochs, first.best_epoch, first.history)
    for first_weights, again_weights in zip(
        first_model.get_weights(), again_model.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(first_weights, again_weights)

    _, other_seed = fit_low_res_tiny(tmp_path, low_res_profile(), seed=SEED + 1)
    assert not other_seed.resumed and len(calls) == 1
    _, fewer_epochs = fit_low_res_tiny(tmp_path, low_res_profile(low_res_epochs=1))
    assert not fewer_epochs.resumed and fewer_epochs.epochs == 1 and len(calls) == 2


def test_fit_low_res_needs_a_profile_with_that_phase(tmp_path):
    with pytest.raises(ValueError, match="no low-resolution phase"):
        fit_low_res_tiny(tmp_path, low_res_profile(low_res_epochs=0))
    assert not (tmp_path / training.LOW_RES_FOLDER).exists()
