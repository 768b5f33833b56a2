"""Compile, train and save the U-Net: schedules, callbacks, mixed precision and distribution.

Taught in ``03_training``; ``bench/quality.py`` and ``bench/anchors.py`` train through it too.

The model code is backend-agnostic Keras 3. TensorFlow is imported only inside the functions
that need ``tf.distribute`` or device queries, so this module also loads under
``KERAS_BACKEND=jax`` on a machine without TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras

from unet_clustering import config, metrics, unet

MODEL_FILE = "unet.keras"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
BACKUP_FOLDER = "training_backup"
STATE_FILE = "training_state.json"
#: Subfolder (of the run folder) of the low-resolution phase, and the files it leaves there.
LOW_RES_FOLDER = "low_res"
LOW_RES_WEIGHTS_FILE = "final.weights.h5"
LOW_RES_RECORD_FILE = "low_res.json"
#: The validation quantity that picks the best model and drives early stopping.
MONITOR = "val_fg_iou"
SCHEDULES = ("cosine", "one-cycle", "constant")
#: AdamW's decoupled weight decay, in every profile. 5e-2 scored lower on held-out images
#: (``bench/RESULTS.md`` section 4).
WEIGHT_DECAY = 1e-4


# --------------------------------------------------------------------------------------------
# Devices, precision and distribution
# --------------------------------------------------------------------------------------------


def accelerators() -> dict[str, int]:
    """Count the GPUs and TPU cores this process can use, for any Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return {
            "gpu": len(tf.config.list_physical_devices("GPU")),
            "tpu": len(tf.config.list_logical_devices("TPU")),
        }
    if backend == "jax":
        import jax

        return {"gpu": sum(device.platform == "gpu" for device in jax.devices()), "tpu": 0}
    if backend == "torch":
        import torch

        return {"gpu": torch.cuda.device_count(), "tpu": 0}
    return {"gpu": 0, "tpu": 0}


def configure_precision(policy: str = "auto") -> str:
    """Set Keras' global dtype policy and return it.

    ``"auto"`` picks mixed precision on a GPU (``mixed_bfloat16`` where the GPU supports it under
    JAX, ``mixed_float16`` under TensorFlow, which every CUDA GPU runs) and ``float32`` on a CPU.
    Mixed precision needs 16-bit instructions that most CPUs lack; on one with bfloat16
    instructions, ``mixed_bfloat16`` trained the ``quick`` recipe 1.3 times as fast but scored lower
    on held-out images (``bench/RESULTS.md`` section 4), so ``"auto"`` keeps float32 there too.
    The U-Net's ``logits`` layer always stays float32.
    """
    if policy == "auto":
        if accelerators()["gpu"] == 0:
            policy = "float32"
        else:
            policy = "mixed_bfloat16" if keras.backend.backend() == "jax" else "mixed_float16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def default_strategy():
    """The ``tf.distribute`` strategy that fits this machine (TensorFlow backend only).

    A TPU (Colab) gives a ``TPUStrategy``, several GPUs a ``MirroredStrategy``, anything else
    TensorFlow's default strategy (one device). Build and compile the model inside
    ``strategy.scope()``.
    """
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.NotFoundError):
        pass
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def replicas(strategy) -> int:
    return int(getattr(strategy, "num_replicas_in_sync", 1)) if strategy is not None else 1


# --------------------------------------------------------------------------------------------
# Learning-rate schedules and compilation
# --------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="unet_clustering")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle schedule: a linear warm-up to ``peak`` over ``warmup_fraction`` of the steps, then
    a cosine decay to ``peak / final_division``."""

    def __init__(
        self,
        peak: float,
        total_steps: int,
        warmup_fraction: float = 0.3,
        start_division: float = 25.0,
        final_division: float = 1e4,
    ):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_fraction = float(warmup_fraction)
        self.start_division = float(start_division)
        self.final_division = float(final_division)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup_steps = max(1.0, self.warmup_fraction * self.total_steps)
        decay_steps = max(1.0, self.total_steps - warmup_steps)
        start, end = self.peak / self.start_division, self.peak / self.final_division
        warm = start + (self.peak - start) * keras.ops.minimum(step / warmup_steps, 1.0)
        progress = keras.ops.clip((step - warmup_steps) / decay_steps, 0.0, 1.0)
        cool = end + (self.peak - end) * 0.5 * (1.0 + keras.ops.cos(math.pi * progress))
        return keras.ops.where(step < warmup_steps, warm, cool)

    def get_config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_fraction,
            "start_division": self.start_division,
            "final_division": self.final_division,
        }


#: Fraction of the steps spent warming up when ``learning_rate_schedule`` is not told.
DEFAULT_WARMUP_FRACTIONS = {"cosine": 0.05, "one-cycle": 0.3}


def learning_rate_schedule(
    kind: str, learning_rate: float, total_steps: int, warmup_fraction: float | None = None
):
    """A learning-rate schedule over ``total_steps`` optimizer steps.

    * ``"cosine"``: a linear warm-up from ``learning_rate / 10`` to ``learning_rate`` over
      ``warmup_fraction`` of the steps, then cosine decay to 1 % of ``learning_rate``;
    * ``"one-cycle"``: :class:`OneCycle`, peaking after ``warmup_fraction`` of the steps;
    * ``"constant"``: ``learning_rate`` throughout.

    ``warmup_fraction=None`` uses the schedule's own default (``DEFAULT_WARMUP_FRACTIONS``).
    Taught in ``03_training``.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {kind!r}.")
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1; got {total_steps}.")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0; got {learning_rate!r}.")
    if kind == "constant":
        return learning_rate
    if warmup_fraction is None:
        warmup_fraction = DEFAULT_WARMUP_FRACTIONS[kind]
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1); got {warmup_fraction!r}.")
    if kind == "one-cycle":
        return OneCycle(learning_rate, total_steps, warmup_fraction=warmup_fraction)
    warmup_steps = int(warmup_fraction * total_steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate / 10 if warmup_steps else learning_rate,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=0.01,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def compile_model(
    model: keras.Model,
    learning_rate: float,
    total_steps: int,
    schedule: str = "cosine",
    loss: str = "ce+dice",
    weight_decay: float = WEIGHT_DECAY,
    jit_compile: bool | str = "auto",
) -> keras.Model:
    """Compile ``model`` with AdamW, a learning-rate schedule, the project's loss and metrics.

    On a CPU, XLA compilation (``jit_compile``) makes training slower, so ``"auto"`` only turns
    it on where a GPU is present.
    """
    if jit_compile == "auto":
        jit_compile = accelerators()["gpu"] > 0
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate_schedule(schedule, learning_rate, total_steps),
        weight_decay=weight_decay,
    )
    model.compile(
        optimizer=optimizer,
        loss=metrics.make_loss(loss),
        metrics=metrics.training_metrics(),
        jit_compile=jit_compile,
    )
    return model


def build_for_profile(
    profile: config.Profile,
    num_train_examples: int,
    strategy=None,
    seed: int | None = None,
    weight_decay: float = WEIGHT_DECAY,
    **unet_options: Any,
) -> keras.Model:
    """Build the profile's U-Net and compile it with the profile's recipe, inside ``strategy.scope()``.

    The schedule's length is the profile's epochs times the number of batches per epoch. The
    random seed is set first, so the same ``seed`` gives the same initial weights.
    ``unet_options`` go to :func:`unet.build_unet` (for example ``dropout=0.1``, or
    ``encoder="mobilenetv2"``, whose depth is fixed, so the profile's depth applies only to the
    plain encoder). Taught in ``03_training``.
    """
    unet_options = dict(unet_options)
    if unet_options.get("encoder", "plain") == "plain":
        unet_options.setdefault("depth", profile.depth)
    keras.utils.set_random_seed(config.get_seed(seed))
    steps_per_epoch = math.ceil(num_train_examples / profile.batch_size)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        model = unet.build_unet(
            image_size=profile.image_size,
            num_classes=config.NUM_CLASSES,
            base_filters=profile.base_filters,
            **unet_options,
        )
        compile_model(
            model,
            learning_rate=profile.learning_rate,
            total_steps=steps_per_epoch * profile.epochs,
            schedule=profile.schedule,
            loss=profile.loss,
            weight_decay=weight_decay,
        )
    return model


# --------------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------------


def save_model_atomically(model: keras.Model, path: Path) -> Path:
    """Save ``model`` to a temporary ``.keras`` file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.close(handle)
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def save_weights_atomically(model: keras.Model, path: Path) -> Path:
    """Save ``model``'s weights to a hidden file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # save_weights insists on the ".weights.h5" ending, so the prefix marks the file as partial.
    partial = path.with_name(f".partial.{path.name}")
    try:
        model.save_weights(str(partial), overwrite=True)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


class BestModelCheckpoint(keras.callbacks.Callback):
    """Keep the model with the highest ``monitor`` so far, written atomically.

    The best score is stored beside the model, so a run that resumes after being killed keeps
    comparing against the best model it had already saved.
    """

    def __init__(self, path: Path, state_path: Path, monitor: str = MONITOR, resume: bool = False):
        super().__init__()
        self.path, self.state_path, self.monitor, self.resume = Path(path), Path(state_path), monitor, resume
        self.best = -math.inf
        self.best_epoch: int | None = None

    def on_train_begin(self, logs=None) -> None:
        if self.resume and self.state_path.exists():
            state = config.read_json(self.state_path)
            self.best, self.best_epoch = state.get("best", -math.inf), state.get("best_epoch")

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        score = (logs or {}).get(self.monitor)
        if score is None:
            raise KeyError(
                f"{self.monitor!r} is not among the logged values {sorted(logs or {})}; "
                "pass validation data and compile with metrics.training_metrics()."
            )
        if float(score) > self.best:
            self.best, self.best_epoch = float(score), epoch + 1
            save_model_atomically(self.model, self.path)
            config.write_json(
                self.state_path, {"best": self.best, "best_epoch": self.best_epoch, "monitor": self.monitor}
            )


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore`` whose backup files are replaced atomically.

    Keras writes the backup weights straight over the previous ones, so a run killed while
    writing them (likely when backing up every step) leaves a half-written file that every later
    attempt fails to read. Here the weights go to a hidden temporary file that is then renamed
    into place, and the epoch counter is written with :func:`config.write_json`: a kill leaves
    the previous backup or the new one, never a broken one. Taught in ``03_training``.
    """

    def _save_model(self) -> None:
        save_weights_atomically(self.model, Path(self._weights_path))
        config.write_json(
            Path(self._training_metadata_path),
            {"epoch": self._current_epoch, "batch": self._last_batch_seen},
        )


def make_callbacks(
    run_dir: Path,
    model_path: Path,
    patience: int | None = None,
    tensorboard: bool = False,
    resume: bool = False,
    backup_every_steps: int | None = None,
    backup: bool = True,
) -> list[keras.callbacks.Callback]:
    """Callbacks of a training run (taught in ``03_training``).

    * :class:`BestModelCheckpoint` keeps the best model by validation foreground IoU;
    * ``CSVLogger`` appends each epoch's logs to ``history.csv``;
    * ``EarlyStopping`` ends training after ``patience`` epochs without improvement;
    * ``TensorBoard`` on request, logging to ``run_dir/tensorboard``;
    * :class:`AtomicBackupAndRestore` saves the training state every epoch (or every
      ``backup_every_steps`` steps), so a killed run started again resumes where it stopped;
      ``backup=False`` leaves it out, for runs in a folder that is deleted afterwards, which
      nothing could resume.

    The backup comes last: an epoch counts as done only once its row and best model are written,
    so a run killed in between repeats that epoch (its old row is then dropped, see
    :func:`read_history`) instead of losing it.
    """
    if backup_every_steps is not None and backup_every_steps < 1:
        raise ValueError(
            f"backup_every_steps must be a positive number of steps, or None to back up every epoch; "
            f"got {backup_every_steps!r}."
        )
    run_dir = Path(run_dir)
    callbacks: list[keras.callbacks.Callback] = [
        BestModelCheckpoint(model_path, run_dir / STATE_FILE, resume=resume),
        keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=True),
    ]
    if patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=patience))
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    if backup:
        callbacks.append(
            AtomicBackupAndRestore(
                str(run_dir / BACKUP_FOLDER), save_freq=backup_every_steps or "epoch", delete_checkpoint=True
            )
        )
    return callbacks


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FitResult:
    """What a training run produced."""

    history: dict[str, list[float]]
    epochs: int
    train_s: float
    images_per_s: float
    best_epoch: int | None
    best_score: float
    resumed: bool
    model_path: Path


def fit(
    model: keras.Model,
    train: Iterable,
    validation: Iterable,
    epochs: int,
    num_train_examples: int,
    run_dir: Path | None = None,
    patience: int | None = None,
    tensorboard: bool = False,
    seed: int | None = None,
    verbose: int | str = "auto",
    backup_every_steps: int | None = None,
    backup: bool = True,
) -> FitResult:
    """Train a compiled model and keep the best one in ``run_dir/unet.keras``.

    ``run_dir`` defaults to the artifacts folder. If an earlier run in the same folder was
    interrupted, training resumes from its last backup instead of starting over. The history
    returned (and ``history.csv``) covers every epoch, resumed ones included, once each: an epoch
    that was interrupted and run again keeps only the row of its last run.

    ``backup=False`` neither backs up nor resumes: for a folder deleted after the run, where each
    backup (a copy of the weights, 31 MB and about 0.15 s for the ``full`` model) would be
    written for nothing.
    """
    run_dir = Path(run_dir) if run_dir is not None else config.artifacts_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    model_path = run_dir / MODEL_FILE
    history_path = run_dir / HISTORY_FILE
    backup_dir = run_dir / BACKUP_FOLDER
    # Hidden files are temporaries of a backup that was being written when the run died.
    resume = (
        backup
        and backup_dir.is_dir()
        and any(not entry.name.startswith(".") for entry in backup_dir.iterdir())
    )
    if not resume:
        for stale in (history_path, run_dir / STATE_FILE):
            stale.unlink(missing_ok=True)
    keras.utils.set_random_seed(config.get_seed(seed))
    callbacks = make_callbacks(
        run_dir,
        model_path,
        patience=patience,
        tensorboard=tensorboard,
        resume=resume,
        backup_every_steps=backup_every_steps,
        backup=backup,
    )
    checkpoint = next(callback for callback in callbacks if isinstance(callback, BestModelCheckpoint))
    started = time.perf_counter()
    # The pipelines shuffle themselves (seeded); Keras' own shuffle does not apply to them.
    model.fit(
        train, validation_data=validation, epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False
    )
    train_s = time.perf_counter() - started
    _drop_repeated_epochs(history_path)
    history = read_history(history_path)
    epochs_run = len(history.get("epoch", []))
    epochs_this_call = max(1, len(model.history.history.get("loss", [])))
    return FitResult(
        history=history,
        epochs=epochs_run,
        train_s=train_s,
        images_per_s=epochs_this_call * num_train_examples / train_s,
        best_epoch=checkpoint.best_epoch,
        best_score=checkpoint.best,
        resumed=resume,
        model_path=model_path,
    )


def fit_and_load(
    model: keras.Model,
    train: Iterable,
    validation: Iterable,
    epochs: int,
    num_train_examples: int,
    image_size: int,
    run_dir: Path | None = None,
    seed: int | None = None,
    verbose: int | str = 2,
) -> tuple[FitResult, keras.Model]:
    """:func:`fit`, then the best epoch's model loaded back, for the bench scripts.

    With ``run_dir=None`` (``bench/anchors.py``, ``bench/quality.py`` by default) training
    happens in a temporary folder that is deleted afterwards, without backups: nothing is written
    to the artifacts, and no backup of an earlier run can be resumed by mistake. With a ``run_dir``
    (``bench/quality.py --run-dir``) the folder keeps the run, and a killed run resumes there.
    """
    with contextlib.ExitStack() as stack:
        kept = run_dir is not None
        if run_dir is None:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        result = fit(
            model,
            train,
            validation,
            epochs=epochs,
            num_train_examples=num_train_examples,
            run_dir=Path(run_dir),
            seed=seed,
            verbose=verbose,
            backup=kept,
        )
        best = load_trained_model(result.model_path, image_size=image_size)
    return result, best


def fit_low_res(
    model: keras.Model,
    train: Iterable,
    validation: Iterable,
    profile: config.Profile,
    num_train_examples: int,
    run_dir: Path | None = None,
    strategy=None,
    seed: int | None = None,
    weight_decay: float = WEIGHT_DECAY,
    verbose: int | str = "auto",
    backup: bool = True,
    **unet_options: Any,
) -> FitResult:
    """Progressive resizing: train a low-resolution twin of ``model``, then copy its weights in.

    A convolution has the same weights at every input size, so the U-Net built at the profile's
    ``low_res_image_size`` has exactly the weights of ``model``. Its epochs cost a fraction of
    those at full size (about a third at 64 px against 128 px on a CPU), so the model sees many
    more augmented images for the same time; the epochs at full size that follow (:func:`fit`)
    then refine the details. ``train`` and ``validation`` must be pipelines at the low
    resolution (``data.make_datasets(profile, image_size=profile.low_res_image_size)``).

    The phase runs in ``run_dir/low_res`` with the callbacks of :func:`fit`, so an interrupted
    phase resumes. Its final weights (not its best epoch: the full-size epochs choose the best
    model) are kept there with the settings that made them (the low-resolution profile, number of
    training images, seed, weight decay and U-Net options; not the data or its augmentation). A
    later call with the same settings loads them instead of training again (``resumed`` is then
    true), which lets a run that died in its full-size epochs go on without repeating this phase.
    Delete that folder to retrain it. ``backup=False`` trains without per-epoch backups (see
    :func:`fit`), for a ``run_dir`` deleted afterwards.
    Returns the phase's :class:`FitResult`. Taught in ``03_training``.
    """
    low_profile = profile.low_res()
    run_dir = Path(run_dir) if run_dir is not None else config.artifacts_dir()
    folder = run_dir / LOW_RES_FOLDER
    weights_path, record_path = folder / LOW_RES_WEIGHTS_FILE, folder / LOW_RES_RECORD_FILE
    settings = {
        "profile": low_profile.to_dict(),
        "num_train_examples": int(num_train_examples),
        "seed": config.get_seed(seed),
        "weight_decay": float(weight_decay),
        "unet_options": {key: unet_options[key] for key in sorted(unet_options)},
    }
    # Compare as JSON reads them back (tuples become lists).
    settings = json.loads(json.dumps(settings, default=str))
    if weights_path.exists() and record_path.exists():
        record = config.read_json(record_path)
        if record.get("settings") == settings:
            model.load_weights(str(weights_path))
            return FitResult(
                history=read_history(folder / HISTORY_FILE),
                model_path=weights_path,
                resumed=True,
                **record["result"],
            )
    for stale in (weights_path, record_path):
        stale.unlink(missing_ok=True)
    twin = build_for_profile(
        low_profile,
        num_train_examples,
        strategy=strategy,
        seed=seed,
        weight_decay=weight_decay,
        **unet_options,
    )
    result = fit(
        twin,
        train,
        validation,
        epochs=low_profile.epochs,
        num_train_examples=num_train_examples,
        run_dir=folder,
        seed=seed,
        verbose=verbose,
        backup=backup,
    )
    # The full-size epochs keep their own best model; the twin's best checkpoint is not needed.
    result.model_path.unlink(missing_ok=True)
    save_weights_atomically(twin, weights_path)
    summary = {
        "epochs": result.epochs,
        "train_s": round(result.train_s, 1),
        "images_per_s": round(result.images_per_s, 1),
        "best_epoch": result.best_epoch,
        "best_score": result.best_score,
    }
    config.write_json(record_path, {"settings": settings, "result": summary})
    model.set_weights(twin.get_weights())
    return dataclasses.replace(result, model_path=weights_path)


def _history_rows(path: Path) -> tuple[list[str], list[dict[str, str]], bool]:
    """The header of ``history.csv``, its rows (one per epoch, in order) and whether any repeated."""
    import csv

    with Path(path).open(newline="") as stream:
        reader = csv.DictReader(stream)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    # A resumed run repeats the epochs after its last backup, so an epoch may appear twice; its
    # last row describes the weights training went on from.
    by_epoch = {int(float(row["epoch"])): row for row in rows}
    return header, [by_epoch[epoch] for epoch in sorted(by_epoch)], len(by_epoch) != len(rows)


def _drop_repeated_epochs(path: Path) -> None:
    """Rewrite ``history.csv`` (atomically) with one row per epoch if an epoch was run twice."""
    import csv
    import io

    path = Path(path)
    if not path.exists():
        return
    header, rows, repeated = _history_rows(path)
    if not repeated:
        return
    buffer = io.StringIO()
    # CSVLogger writes Excel-style CSV; the same dialect keeps later appended rows consistent.
    writer = csv.DictWriter(buffer, fieldnames=header, dialect="excel")
    writer.writeheader()
    writer.writerows(rows)
    config.atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def read_history(path: Path) -> dict[str, list[float]]:
    """Read ``history.csv`` written by ``CSVLogger`` into ``{column: values}`` (epochs count from 0).

    Each epoch appears once, in order, even if an interrupted run repeated it; values Keras
    could not log (written ``NA``) read as NaN. Taught in ``03_training``.
    """
    path = Path(path)
    if not path.exists():
        return {}
    header, rows, _ = _history_rows(path)
    columns: dict[str, list[float]] = {key: [] for key in header}
    for row in rows:
        for key in header:
            value = row.get(key)
            columns[key].append(math.nan if value in ("", "NA", None) else float(value))
    return columns


# --------------------------------------------------------------------------------------------
# Saved models and the metrics report
# --------------------------------------------------------------------------------------------


class IncompatibleModelError(ValueError):
    """The saved model cannot be used: unreadable, or made for other inputs or classes."""


def load_trained_model(path: Path | None = None, image_size: int | None = None) -> keras.Model:
    """Load ``artifacts/unet.keras`` written by ``03_training``, with a clear error if it is unusable."""
    path = Path(path) if path is not None else config.require_artifact(MODEL_FILE)
    if not path.exists():
        raise config.MissingArtifactError(
            f"{path} is missing. Run notebooks/{config.ARTIFACT_MAKERS[MODEL_FILE]} first; it trains and saves the model."
        )
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001 - any failure to read means the same to the user
        raise IncompatibleModelError(
            f"{path} could not be loaded as a Keras model ({type(error).__name__}: {error}). It may come from "
            f"another version of this project; run notebooks/{config.ARTIFACT_MAKERS[MODEL_FILE]} again to "
            "rebuild it."
        ) from error
    output_classes = model.output_shape[-1]
    if output_classes != config.NUM_CLASSES:
        raise IncompatibleModelError(
            f"{path} predicts {output_classes} classes, not the {config.NUM_CLASSES} of {config.CLASS_NAMES}; "
            f"run notebooks/{config.ARTIFACT_MAKERS[MODEL_FILE]} again."
        )
    model_size = model.input_shape[1]
    if image_size is not None and model_size is not None and model_size != image_size:
        raise IncompatibleModelError(
            f"{path} was trained on {model_size} px images but this run uses {image_size} px; "
            f"run notebooks/{config.ARTIFACT_MAKERS[MODEL_FILE]} again with this run's profile, or set "
            f"PROFILE_NAME (or ${config.PROFILE_ENV}) to the profile that model was trained with."
        )
    return model


def write_metrics_report(
    test_metrics: dict[str, Any],
    profile: config.Profile,
    fit_result: FitResult,
    data_description: dict[str, Any],
    model: keras.Model,
    path: Path | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``metrics.json``: the test metrics and everything needed to read them honestly."""
    path = Path(path) if path is not None else config.artifacts_dir() / METRICS_FILE
    report = {
        "test_metrics": test_metrics,
        "evaluated_on": f"{data_description['counts']['test']} test images at "
        f"{data_description['image_size']} px (tfds 'test' split)",
        "profile": profile.to_dict(),
        "image_size": data_description["image_size"],
        "epochs": fit_result.epochs,
        "best_epoch": fit_result.best_epoch,
        "best_validation_fg_iou": fit_result.best_score,
        "train_s": round(fit_result.train_s, 1),
        "train_images_per_s": round(fit_result.images_per_s, 1),
        "resumed": fit_result.resumed,
        "data": data_description,
        "model": {
            "name": model.name,
            "parameters": int(model.count_params()),
            "file": str(fit_result.model_path),
        },
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "accelerators": accelerators(),
        **(extra or {}),
    }
    return config.write_json(path, report)
