"""Run profiles, the classes of the data, and every artifact the notebooks exchange.

This module imports no deep-learning framework, so it is cheap to import anywhere (tests, the
command line, a machine without TensorFlow).

A profile sizes a run. ``UNET_PROFILE`` (or a notebook's ``PROFILE_NAME``) chooses one; without
either, a machine with an NVIDIA GPU gets ``full`` and any other gets ``quick``. Training budgets are
counted in images seen, not epochs, so that a profile costs the same time on the 600-image offline
sample and on the full dataset of 7,349 photos: the number of epochs follows from the size of the
training split.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Classes:
    """The classes of a dataset's masks: their names (class ``i`` is ``names[i]``) and the background.

    "Foreground" means every class but the background: the pet and its border in Oxford-IIIT Pet, the
    one white class of a black-and-white mask.
    """

    names: tuple[str, ...]
    background: int

    def __post_init__(self) -> None:
        if len(self.names) < 2 or not 0 <= self.background < len(self.names):
            raise ValueError(f"Two or more classes and a background among them are needed; got {self}.")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def foreground(self) -> tuple[int, ...]:
        return tuple(index for index in range(self.num_classes) if index != self.background)

    def describe(self) -> str:
        listed = ", ".join(f"{index} = {name}" for index, name in enumerate(self.names))
        return f"{self.num_classes} classes ({listed}); background: {self.names[self.background]}"


#: Oxford-IIIT Pet's trimap classes, after subtracting 1 from the stored values 1, 2, 3.
OXFORD_PET_CLASSES = Classes(("pet", "background", "border"), background=1)
PET, BACKGROUND, BORDER = range(OXFORD_PET_CLASSES.num_classes)

#: GitHub ``owner/name`` of this project: the Colab badges and the notebooks' install cells use it.
#: Change it everywhere at once with ``python tools/set_repository.py OWNER/NAME``.
REPOSITORY = "unet-clustering/unet-clustering"

PROFILE_ENV = "UNET_PROFILE"
ARTIFACTS_ENV = "UNET_ARTIFACTS_DIR"
#: A folder of your own images and masks (``01_data`` explains its layout) to use instead of Oxford-IIIT Pet.
DATASET_ENV = "UNET_DATASET_DIR"
DEFAULT_SEED = 42


@dataclasses.dataclass(frozen=True)
class Profile:
    """Every size and budget a run depends on.

    ``train_images`` is the number of training images the U-Net sees at ``image_size`` (epochs times
    the training split); ``low_res_train_images`` those it sees first at ``low_res_image_size``
    (progressive resizing, taught in ``03_training``). ``max_train_examples`` and
    ``max_test_examples`` cap the splits (``None``: all of them). The last four fields bound the
    analysis of notebooks 04-06 whatever the size of the test split.
    """

    name: str
    description: str
    image_size: int
    batch_size: int
    base_filters: int
    depth: int
    learning_rate: float
    train_images: int
    low_res_image_size: int | None = None
    low_res_train_images: int = 0
    low_res_learning_rate: float | None = None
    validation_fraction: float = 0.1
    max_validation_examples: int = 300
    max_train_examples: int | None = None
    max_test_examples: int | None = None
    tta_flip: bool = True
    #: Test images whose pixels notebooks 04 and 05 cluster, and pixels sampled from each.
    cluster_images: int = 64
    pixels_per_image: int = 512
    #: Test images whose whole pets 05 groups and whose masks 06 ranks.
    analysis_images: int = 400
    #: Points DBSCAN and HDBSCAN are fitted on in 05 (their cost grows with the square).
    density_points: int = 10_000
    #: 07_semi_supervised trains four models at this size (``None``: ``image_size``), each on this many
    #: training images.
    pseudo_label_image_size: int | None = None
    pseudo_label_train_images: int = 2_000

    def epochs(self, num_train: int) -> int:
        """Epochs at ``image_size`` that show the training split about ``train_images`` images."""
        return max(1, round(self.train_images / num_train))

    def low_res_epochs(self, num_train: int) -> int:
        """Epochs at ``low_res_image_size`` (0: the profile trains at full size only)."""
        if not self.low_res_train_images or not self.low_res_image_size:
            return 0
        return max(1, round(self.low_res_train_images / num_train))


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="tests: a tiny model on a few images, seconds per notebook",
        image_size=64,
        batch_size=8,
        base_filters=8,
        depth=3,
        learning_rate=1e-3,
        train_images=32,
        low_res_image_size=32,
        low_res_train_images=32,
        validation_fraction=0.2,
        max_train_examples=40,
        max_test_examples=16,
        tta_flip=False,
        cluster_images=8,
        pixels_per_image=128,
        analysis_images=16,
        density_points=500,
        pseudo_label_image_size=32,
        pseudo_label_train_images=48,
    ),
    "quick": Profile(
        name="quick",
        description="a CPU: the six notebooks in about 15 minutes on 2 cores",
        image_size=128,
        batch_size=8,
        base_filters=16,
        depth=4,
        learning_rate=1e-3,
        # 20 and 80 epochs of the sample's 270 training images (bench/RESULTS.md, section 4).
        train_images=5_400,
        low_res_image_size=64,
        low_res_train_images=21_600,
        low_res_learning_rate=2e-3,
        pseudo_label_image_size=64,
    ),
    "full": Profile(
        name="full",
        description="a GPU (Colab): the full-width U-Net, trained long",
        image_size=128,
        batch_size=32,
        base_filters=32,
        depth=4,
        learning_rate=1e-3,
        # About 60 epochs of the full dataset; bench/RESULTS.md, section 3, derives its Colab time.
        train_images=200_000,
        cluster_images=256,
        pixels_per_image=1024,
        pseudo_label_train_images=20_000,
    ),
}


def gpu_available() -> bool:
    """Whether ``nvidia-smi`` lists a GPU, without importing any framework."""
    command = shutil.which("nvidia-smi")
    if command is None:
        return False
    try:
        listed = subprocess.run([command, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def choose_profile(name: str | None = None) -> tuple[Profile, str]:
    """The profile of a run, and why it was chosen.

    ``name`` wins, then ``$UNET_PROFILE``; otherwise ``full`` where a GPU is visible and ``quick``
    elsewhere.
    """
    if name:
        chosen, reason = name, "set by PROFILE_NAME"
    elif os.environ.get(PROFILE_ENV, "").strip():
        chosen, reason = os.environ[PROFILE_ENV], f"set by ${PROFILE_ENV}"
    elif gpu_available():
        chosen, reason = "full", "a GPU is visible"
    else:
        chosen, reason = "quick", "no GPU is visible"
    chosen = chosen.strip().lower()
    if chosen not in PROFILES:
        raise ValueError(
            f"Unknown profile {chosen!r} ({reason}). Choose one of {sorted(PROFILES)} with the "
            f"{PROFILE_ENV} environment variable or PROFILE_NAME in the parameters cell."
        )
    override = f"; to change it, set PROFILE_NAME or ${PROFILE_ENV} to one of {sorted(PROFILES)}"
    return PROFILES[chosen], f"{reason}{override}"


def get_profile(name: str | None = None) -> Profile:
    """The profile :func:`choose_profile` chooses."""
    return choose_profile(name)[0]


def split_sizes(num_train: int, num_test: int, profile: Profile) -> dict[str, int]:
    """How many examples go to fitting, validation (the end of tfds' train split) and test."""
    used_train = min(num_train, profile.max_train_examples or num_train)
    validation = min(profile.max_validation_examples, max(1, round(used_train * profile.validation_fraction)))
    if used_train - validation < 1:
        raise ValueError(f"Only {used_train} training example(s): too few to keep a validation split.")
    used_test = min(num_test, profile.max_test_examples or num_test)
    return {"train": used_train - validation, "validation": validation, "test": used_test}


# --------------------------------------------------------------------------------------------
# Artifacts: the files through which the notebooks pass state
# --------------------------------------------------------------------------------------------

#: ``{key: (file or folder name, the notebook that writes it)}``: the only place that names them.
ARTIFACTS: dict[str, tuple[str, str]] = {
    "dataset": ("dataset.json", "01_data.ipynb"),
    "training": ("training", "03_training.ipynb"),
    "model": ("unet.keras", "03_training.ipynb"),
    "history": ("history.csv", "03_training.ipynb"),
    "metrics": ("metrics.json", "03_training.ipynb"),
    "features": ("features.npz", "04_feature_extraction.ipynb"),
    "clustering": ("clustering_metrics.json", "05_clustering.ipynb"),
    "figures": ("figures", "06_visualization.ipynb"),
    "predictions": ("predictions", "06_visualization.ipynb"),
    "serving": ("serving", "06_visualization.ipynb"),
    "semi_supervised": ("semi_supervised.json", "07_semi_supervised.ipynb"),
}

#: What the run folder of ``03_training`` (artifact ``"training"``) holds: the run's settings, the
#: backups an interrupted run resumes from, the low-resolution phase's epoch log, and a lock.
RUN_FOLDER_FILES: dict[str, str] = {
    "recipe": "recipe.json",
    "backup": "backup",
    "low_res_backup": "low_res_backup",
    "low_res_history": "low_res_history.csv",
    "lock": ".lock",
}

#: How long the notebooks that make the expensive artifacts take, for the error that asks for them.
NOTEBOOK_TIME = {"03_training.ipynb": "about 10 minutes on a 2-core CPU with the quick profile"}


class MissingArtifactError(FileNotFoundError):
    """An artifact another notebook should have written is not there."""


class StaleArtifactError(ValueError):
    """An artifact was made with another model than the one saved now."""


def project_root(start: Path | None = None) -> Path | None:
    """The checkout this code runs in (the folder holding ``pyproject.toml`` and ``notebooks/``)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return None


def artifacts_dir(create: bool = True) -> Path:
    """``$UNET_ARTIFACTS_DIR``, else ``<project>/artifacts`` (``./artifacts`` outside a checkout)."""
    if os.environ.get(ARTIFACTS_ENV):
        path = Path(os.environ[ARTIFACTS_ENV]).expanduser()
    else:
        path = (project_root() or Path.cwd()) / "artifacts"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def artifact(key: str) -> Path:
    """Where artifact ``key`` of :data:`ARTIFACTS` lives (it need not exist yet)."""
    if key not in ARTIFACTS:
        raise KeyError(f"No artifact {key!r}; the artifacts are {sorted(ARTIFACTS)}.")
    return artifacts_dir() / ARTIFACTS[key][0]


def require_artifact(key: str) -> Path:
    """The path of artifact ``key``, or an error that names the notebook to run first."""
    path = artifact(key)
    if not path.exists():
        maker = ARTIFACTS[key][1]
        took = f" ({NOTEBOOK_TIME[maker]})" if maker in NOTEBOOK_TIME else ""
        raise MissingArtifactError(
            f"{path} is missing. Run notebooks/{maker} first{took}; it writes {path.name} into "
            f"{path.parent}. (Set {ARTIFACTS_ENV} if your artifacts live elsewhere.)"
        )
    return path


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks: ties an artifact to the model it came from."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_same_model(record: dict[str, Any], model_path: Path, key: str, path: Path | None = None) -> None:
    """Refuse artifact ``key`` (read from ``path``) when ``record["model_sha256"]`` is not the model saved now."""
    if record.get("model_sha256") != file_sha256(model_path):
        maker = ARTIFACTS[key][1]
        raise StaleArtifactError(
            f"{path or ARTIFACTS[key][0]} was made with another model than {model_path} (trained again since?). "
            f"Run notebooks/{maker} again to remake it with this model."
        )


def dataset_folder() -> str | None:
    """The folder of images and masks this run uses, or ``None`` for Oxford-IIIT Pet.

    What ``01_data`` recorded in ``artifacts/dataset.json``; before it has run, ``$UNET_DATASET_DIR``.
    """
    path = artifact("dataset")
    if path.exists():
        return read_json(path).get("folder")
    return os.environ.get(DATASET_ENV, "").strip() or None


def dataset_classes() -> Classes:
    """The classes of the data this run uses, as ``01_data`` recorded them in ``artifacts/dataset.json``.

    Before ``01_data`` has run, Oxford-IIIT Pet's, unless ``$UNET_DATASET_DIR`` names a folder of your
    own, whose classes only ``01_data`` finds out.
    """
    path = artifact("dataset")
    if not path.exists():
        if os.environ.get(DATASET_ENV, "").strip():
            require_artifact("dataset")  # raises, naming the notebook that finds the classes
        return OXFORD_PET_CLASSES
    return _recorded_classes(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _recorded_classes(path: str, modified_ns: int) -> Classes:
    """The classes in a dataset record, read once per version of the file (plots ask for them often)."""
    record = read_json(Path(path))
    names = tuple(record.get("class_names", OXFORD_PET_CLASSES.names))
    background = record.get("background", names.index("background") if "background" in names else 0)
    return Classes(names, background)


COLAB_DRIVE_MOUNT = "/content/drive"
COLAB_DRIVE_ARTIFACTS = "/content/drive/MyDrive/unet-clustering/artifacts"


def keep_artifacts_on_drive(folder: str = COLAB_DRIVE_ARTIFACTS) -> Path:
    """On Colab: mount your Google Drive and keep the artifacts in ``folder`` on it.

    Colab gives each notebook its own short-lived machine, so a model that ``03_training`` saves
    under ``/content`` is gone when you open ``04_feature_extraction``; on your Drive, every
    notebook finds what the earlier ones wrote. A ``$UNET_ARTIFACTS_DIR`` you set yourself wins.
    If the Drive cannot be mounted, a warning says so and the artifacts stay on this machine.
    """
    try:
        from google.colab import drive  # only on Colab

        drive.mount(COLAB_DRIVE_MOUNT)
    except Exception as error:  # noqa: BLE001 - any failure leaves the local folder usable
        warnings.warn(
            f"Google Drive was not mounted ({type(error).__name__}: {error}). The artifacts stay in "
            f"{artifacts_dir(create=False)} on this machine, which the next notebook's machine cannot see.",
            stacklevel=2,
        )
        return artifacts_dir()
    os.environ.setdefault(ARTIFACTS_ENV, folder)
    return artifacts_dir()


# --------------------------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------------------------


def atomic_write_bytes(path: Path, payload: bytes) -> Path:
    """Write ``payload`` to a uniquely named temporary file beside ``path``, then rename it into place.

    A run killed half-way leaves the old file or the new one, never half of one, and two runs never
    share a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        give_default_permissions(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (threads may be writing files)."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)  # elsewhere the umask can only be read by setting it
        os.umask(umask)
        return umask


def give_default_permissions(path: Path) -> None:
    """The permissions a plain ``open()`` would give (``mkstemp`` makes owner-only files)."""
    os.chmod(path, 0o666 & ~current_umask())


def write_json(path: Path, content: dict[str, Any]) -> Path:
    """Write ``content`` as indented JSON, atomically (numpy values and paths become plain JSON)."""
    text = json.dumps(_without_nan(content), indent=2, sort_keys=True, default=_json_default) + "\n"
    return atomic_write_bytes(Path(path), text.encode("utf-8"))


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _without_nan(value: Any) -> Any:
    """``value`` with every NaN (an undefined score) as ``None``, which strict JSON readers accept."""
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nan(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return _without_nan(value.tolist())
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} as JSON")
