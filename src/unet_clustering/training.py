"""The plumbing around ``model.fit`` in ``03_training``: devices, the run folder, histories, saved models.

The lesson itself (the loss, ``compile``, ``fit`` and its callbacks) is written in the notebook. This
module keeps what is not the lesson: which devices there are, whether an interrupted run can
resume, a lock so that two runs never share a run folder, and loading the saved model with errors
that say what to do.

TensorFlow is imported only inside the functions that ask it about devices, so the module also loads
under another Keras backend.
"""

from __future__ import annotations

import atexit
import csv
import dataclasses
import json
import math
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import keras

from unet_clustering import config

RECIPE_FILE = config.RUN_FOLDER_FILES["recipe"]
BACKUP_FOLDER = config.RUN_FOLDER_FILES["backup"]
LOW_RES_BACKUP_FOLDER = config.RUN_FOLDER_FILES["low_res_backup"]
LOW_RES_HISTORY_FILE = config.RUN_FOLDER_FILES["low_res_history"]
LOCK_FILE = config.RUN_FOLDER_FILES["lock"]
#: The validation score that chooses the best epoch.
MONITOR = "val_fg_iou"

try:  # POSIX; elsewhere two runs in one folder are not prevented
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

#: Open lock files of the run folders this process trains in, by folder; closed when the process exits.
_held_locks: dict[Path, Any] = {}
atexit.register(lambda: [stream.close() for stream in _held_locks.values()])


def gpu_count() -> int:
    """How many GPUs the current Keras backend can use."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return sum(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.device_count()
    return 0


def configure_precision(policy: str = "auto") -> str:
    """Set Keras' global dtype policy and return it.

    ``"auto"`` picks mixed precision on a GPU (``mixed_bfloat16`` under JAX, ``mixed_float16`` under
    TensorFlow, which every CUDA GPU runs) and ``float32`` on a CPU, where 16-bit arithmetic needs
    instructions that most CPUs lack (``03_training``'s appendix explains the trade).
    """
    if policy == "auto":
        if gpu_count() == 0:
            policy = "float32"
        else:
            policy = "mixed_bfloat16" if keras.backend.backend() == "jax" else "mixed_float16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


class RunLockedError(RuntimeError):
    """Another process is training in the same run folder."""


@dataclasses.dataclass
class Run:
    """A run folder, and what an interrupted run left in it."""

    folder: Path
    #: The full-size epochs resume from their backup (so the low-resolution phase is done).
    resumes_full_size: bool
    #: The best validation score of the epochs already trained, for ``ModelCheckpoint``.
    best_score: float | None
    message: str

    @property
    def backup(self) -> Path:
        return self.folder / BACKUP_FOLDER

    @property
    def low_res_backup(self) -> Path:
        return self.folder / LOW_RES_BACKUP_FOLDER

    @property
    def low_res_history(self) -> Path:
        return self.folder / LOW_RES_HISTORY_FILE


def start_run(folder: Path, recipe: dict[str, Any], history: Path) -> Run:
    """Lock ``folder`` for this process and decide whether an interrupted run resumes.

    ``BackupAndRestore`` resumes from whatever backup it finds (its ``double_checkpoint`` falls back
    on the previous one when the last was cut short by a kill), so a backup made with other
    settings would silently mix two recipes. Here a backup resumes only when ``recipe`` (every
    setting that shapes the model) is the one it was made with; otherwise it is discarded and the
    message says so. A run that starts fresh also clears the epoch logs (``history`` and the
    low-resolution one) that ``CSVLogger`` appends to.
    """
    folder = Path(folder)
    lock_run_folder(folder)
    recipe = _as_json(recipe)
    backups, notes = _usable_backups(folder, recipe)
    resumes_full_size = folder / BACKUP_FOLDER in backups
    if resumes_full_size:
        notes.append(f"Resuming the interrupted run in {folder} at its last finished full-size epoch.")
    elif backups:
        notes.append(f"Resuming the interrupted run in {folder} at its last finished low-resolution epoch.")
    if not resumes_full_size:
        Path(history).unlink(missing_ok=True)
    if not backups:
        (folder / LOW_RES_HISTORY_FILE).unlink(missing_ok=True)
        notes.append("Starting a new run.")
    config.write_json(folder / RECIPE_FILE, recipe)
    best = _best_score(history) if resumes_full_size else None
    return Run(folder=folder, resumes_full_size=resumes_full_size, best_score=best, message=" ".join(notes))


def _usable_backups(folder: Path, recipe: dict[str, Any]) -> tuple[list[Path], list[str]]:
    """The backups in ``folder`` that may resume a run of ``recipe``; the others are deleted, and said so."""
    backups = [path for path in (folder / BACKUP_FOLDER, folder / LOW_RES_BACKUP_FOLDER) if _has_backup(path)]
    recipe_path = folder / RECIPE_FILE
    previous = config.read_json(recipe_path) if recipe_path.exists() else {}
    notes = []
    if backups and previous != recipe:
        changed = sorted(key for key in {*recipe, *previous} if previous.get(key) != recipe.get(key))
        notes.append(
            f"The interrupted run in {folder} had other settings ({', '.join(changed)}), so its backups are "
            "discarded and training starts fresh."
        )
        discarded = backups
    else:
        discarded = [path for path in backups if not _readable_backup(path)]
        notes += [
            f"The backup in {path} was cut short when its run stopped, so that phase starts again."
            for path in discarded
        ]
    for path in discarded:
        shutil.rmtree(path)
    return [path for path in backups if path not in discarded], notes


def lock_run_folder(folder: Path) -> None:
    """Hold a lock on ``folder`` until this process ends; a second process gets a clear error.

    The operating system releases the lock when the process dies, so a killed run never leaves a
    stale lock behind. Locking again from the same process (a notebook cell run twice) is allowed.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None or folder in _held_locks:
        return
    stream = (folder / LOCK_FILE).open("a+")
    try:
        fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        stream.seek(0)
        owner = stream.read().strip() or "another process"
        stream.close()
        raise RunLockedError(
            f"{owner} is training in {folder}. Wait for it to finish, or give this run its own folder "
            f"with ${config.ARTIFACTS_ENV}."
        ) from None
    stream.seek(0)
    stream.truncate()
    stream.write(f"process {os.getpid()}")
    stream.flush()
    _held_locks[folder] = stream


def _has_backup(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _readable_backup(path: Path) -> bool:
    """Whether ``BackupAndRestore(path, double_checkpoint=True)`` has a weights file it can read.

    A run killed while writing its first backup leaves a file that no restore can read.
    """
    import h5py

    for weights in (path / "latest.weights.h5", path / "latest.weights.h5.bkp"):
        try:
            with h5py.File(weights, "r"):
                return True
        except OSError:
            continue
    return False


def _as_json(recipe: dict[str, Any]) -> dict[str, Any]:
    """``recipe`` as it reads back from JSON (tuples become lists), so that it compares with the file."""
    return json.loads(json.dumps(recipe, sort_keys=True, default=str))


def _best_score(history: Path) -> float | None:
    scores = [value for value in read_history(history).get(MONITOR, []) if not math.isnan(value)]
    return max(scores) if scores else None


def read_history(path: Path) -> dict[str, list[float]]:
    """``history.csv`` of ``CSVLogger`` as ``{column: values}``, one row per epoch in order.

    An epoch that was interrupted and run again appears twice in the file; its last row counts.
    Values Keras could not log (written ``NA``) read as NaN.
    """
    path = Path(path)
    if not path.exists():
        return {}
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    by_epoch = {int(float(row["epoch"])): row for row in rows}
    columns: dict[str, list[float]] = {key: [] for key in (rows[0] if rows else {})}
    for epoch in sorted(by_epoch):
        for key, value in by_epoch[epoch].items():
            columns[key].append(math.nan if value in ("", "NA", None) else float(value))
    return columns


class IncompatibleModelError(ValueError):
    """The saved model cannot be used: unreadable, or made for other inputs or classes."""


def load_trained_model(path: Path | None = None, image_size: int | None = None) -> keras.Model:
    """Load the model ``03_training`` saved, with an error that says what to do when it is unusable."""
    path = Path(path) if path is not None else config.require_artifact("model")
    if not path.exists():
        raise config.MissingArtifactError(f"{path} is missing. Run notebooks/03_training.ipynb first.")
    rerun = "run notebooks/03_training.ipynb again to save a new one"
    unreadable = (
        f"{path} is not a readable Keras model. It may be truncated (a run stopped while saving it) or "
        f"come from another version of this project; {rerun}."
    )
    if not zipfile.is_zipfile(path):  # a .keras file is a zip archive; Keras would say "file not found"
        raise IncompatibleModelError(unreadable)
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001 - any failure to read means the same to the user
        raise IncompatibleModelError(f"{unreadable} ({type(error).__name__}: {str(error)[:200]})") from None
    classes = config.dataset_classes()
    if model.output_shape[-1] != classes.num_classes:
        raise IncompatibleModelError(
            f"{path} predicts {model.output_shape[-1]} classes, not the {classes.num_classes} of the data that "
            f"notebooks/01_data.ipynb chose ({', '.join(classes.names)}); {rerun}."
        )
    model_size = model.input_shape[1]
    if image_size is not None and model_size is not None and model_size != image_size:
        raise IncompatibleModelError(
            f"{path} was trained on {model_size} px images but this run uses {image_size} px: {rerun} with "
            f"this run's profile, or set PROFILE_NAME (or ${config.PROFILE_ENV}) to the profile of that model."
        )
    return model
