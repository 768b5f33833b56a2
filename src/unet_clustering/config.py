"""Run profiles, class names and artifact paths shared by every notebook.

Taught in ``01_data``; used by all notebooks. This module imports no deep-learning
framework, so it is cheap to import anywhere (tests, the GPU machine, the command line).

Choose a profile with the environment variable ``UNET_PROFILE`` (``smoke``, ``quick`` or
``full``). Without it, the ``quick`` profile is used on a CPU; notebooks on Colab with a GPU
may ask for ``full`` in their parameters cell.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

#: Trimap classes after subtracting 1 from the stored values 1, 2, 3.
CLASS_NAMES: tuple[str, ...] = ("pet", "background", "border")
NUM_CLASSES: int = len(CLASS_NAMES)
PET, BACKGROUND, BORDER = range(NUM_CLASSES)

#: GitHub ``owner/name`` of this project: the Colab badges and the notebooks' install cell use it.
#: Change it everywhere at once with ``python tools/set_repository.py OWNER/NAME``.
REPOSITORY = "unet-clustering/unet-clustering"

PROFILE_ENV = "UNET_PROFILE"
ARTIFACTS_ENV = "UNET_ARTIFACTS_DIR"
SEED_ENV = "UNET_SEED"
DEFAULT_PROFILE = "quick"
DEFAULT_SEED = 42


@dataclasses.dataclass(frozen=True)
class Profile:
    """Every size and budget a run depends on, in one place.

    ``max_train_examples`` / ``max_test_examples`` of ``None`` mean "all of the split".
    """

    name: str
    image_size: int
    batch_size: int
    epochs: int
    base_filters: int
    depth: int
    learning_rate: float
    validation_fraction: float
    max_train_examples: int | None
    max_test_examples: int | None
    #: Training recipe (see ``training.compile_model``): loss, learning-rate schedule, and
    #: whether evaluation averages the prediction with that of the flipped image.
    loss: str
    schedule: str
    tta_flip: bool
    #: Pixels sampled per image for clustering (notebooks 04 and 05).
    pixels_per_image: int
    #: Test images whose pixels are clustered.
    cluster_images: int
    description: str
    #: Progressive resizing (see ``training.fit_low_res``): train ``low_res_epochs`` epochs at
    #: ``low_res_image_size`` px, peaking at ``low_res_learning_rate``, before the ``epochs`` at
    #: ``image_size``. ``low_res_epochs = 0`` trains at ``image_size`` only.
    low_res_image_size: int | None = None
    low_res_epochs: int = 0
    low_res_learning_rate: float | None = None

    def low_res(self) -> Profile:
        """The profile of the low-resolution phase: its size, epochs and learning rate."""
        if not self.low_res_epochs or not self.low_res_image_size:
            raise ValueError(f"Profile {self.name!r} has no low-resolution phase (low_res_epochs = 0).")
        return dataclasses.replace(
            self,
            image_size=self.low_res_image_size,
            epochs=self.low_res_epochs,
            learning_rate=self.low_res_learning_rate or self.learning_rate,
            low_res_image_size=None,
            low_res_epochs=0,
            low_res_learning_rate=None,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class AugmentOptions:
    """How strong the training augmentation is (taught in ``01_data``).

    ``data.augment_pair`` applies it in tf.data pipelines; ``arrays.augment_batch`` draws the same
    random transforms for numpy arrays, where TensorFlow is missing (the GPU path of ``bench/``).
    """

    flip: bool = True
    #: Zoom in by a random factor in [1, max_scale], then crop back to size.
    max_scale: float = 1.3
    color_jitter: bool = True
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.8, 1.2)
    saturation: tuple[float, float] = (0.8, 1.2)


#: Named strengths of training augmentation; ``bench/quality.py --augment NAME`` picks one, and
#: ``bench/RESULTS.md`` section 4 measures each. ``"standard"`` is what every profile trains with.
AUGMENTATIONS: dict[str, AugmentOptions | None] = {
    "none": None,
    "standard": AugmentOptions(),
    "strong": AugmentOptions(max_scale=1.6, brightness=0.2, contrast=(0.6, 1.4), saturation=(0.6, 1.4)),
}


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        image_size=64,
        batch_size=8,
        epochs=1,
        base_filters=8,
        depth=3,
        learning_rate=1e-3,
        validation_fraction=0.2,
        max_train_examples=40,
        max_test_examples=16,
        loss="ce+dice",
        schedule="cosine",
        tta_flip=False,
        pixels_per_image=128,
        cluster_images=8,
        description="Tests: a tiny model on a few images, seconds per notebook.",
        low_res_image_size=32,
        low_res_epochs=1,
    ),
    "quick": Profile(
        name="quick",
        image_size=128,
        # Batch 8 gives twice the optimizer steps per epoch of batch 16 at nearly the same
        # images/s on a CPU; on the sample it reached the same validation IoU in fewer epochs.
        batch_size=8,
        epochs=20,
        base_filters=16,
        depth=4,
        learning_rate=1e-3,
        validation_fraction=0.1,
        max_train_examples=None,
        max_test_examples=None,
        loss="ce+dice",
        schedule="cosine",
        tta_flip=True,
        pixels_per_image=512,
        cluster_images=64,
        description="CPU default: the whole series in 10 to 15 minutes on 2 cores.",
        # An epoch at 64 px costs about a third of one at 128 px; on held-out trainval images
        # these 80 + 20 epochs beat 40 at 128 px for about the same time (bench/RESULTS.md, 4).
        low_res_image_size=64,
        low_res_epochs=80,
        low_res_learning_rate=2e-3,
    ),
    "full": Profile(
        name="full",
        image_size=128,
        batch_size=32,
        epochs=200,
        base_filters=32,
        depth=4,
        learning_rate=1e-3,
        validation_fraction=0.1,
        max_train_examples=None,
        max_test_examples=None,
        loss="ce+dice",
        schedule="cosine",
        tta_flip=True,
        pixels_per_image=1024,
        cluster_images=298,
        description="GPU / Colab: the full-width U-Net, trained long.",
    ),
}


def with_overrides(profile: Profile, **changes: Any) -> Profile:
    """A copy of ``profile`` with some fields changed (``None`` values are ignored)."""
    unknown = sorted(set(changes) - {field.name for field in dataclasses.fields(Profile)})
    if unknown:
        raise ValueError(f"Profiles have no field(s) {unknown}.")
    return dataclasses.replace(profile, **{key: value for key, value in changes.items() if value is not None})


def get_profile(name: str | None = None) -> Profile:
    """Return the profile called ``name``, else the one named by ``$UNET_PROFILE``, else ``quick``."""
    chosen = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    chosen = chosen.strip().lower()
    if chosen not in PROFILES:
        raise ValueError(
            f"Unknown profile {chosen!r}. Choose one of {sorted(PROFILES)} "
            f"(set it with the {PROFILE_ENV} environment variable or in the parameters cell)."
        )
    return PROFILES[chosen]


def split_sizes(num_train: int, num_test: int, profile: Profile) -> dict[str, int]:
    """How many examples go to fitting, validation (taken from train) and test under ``profile``.

    Validation is the last ``validation_fraction`` of the (possibly limited) train split; the
    test split is never used for it. Taught in ``01_data``.
    """
    used_train = min(num_train, profile.max_train_examples or num_train)
    validation = max(1, round(used_train * profile.validation_fraction))
    if used_train - validation < 1:
        raise ValueError(f"Only {used_train} training example(s): too few to keep a validation split.")
    used_test = min(num_test, profile.max_test_examples or num_test)
    return {"train": used_train - validation, "validation": validation, "test": used_test}


def get_seed(seed: int | None = None) -> int:
    """Return ``seed``, else ``$UNET_SEED``, else the project default."""
    if seed is not None:
        return int(seed)
    return int(os.environ.get(SEED_ENV, DEFAULT_SEED))


def project_root(start: Path | None = None) -> Path | None:
    """The checkout this code runs from (the folder holding ``pyproject.toml`` and ``notebooks/``)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return None


def artifacts_dir(create: bool = True) -> Path:
    """Where notebooks exchange files: ``$UNET_ARTIFACTS_DIR``, else ``<project>/artifacts``.

    Outside a checkout (a bare Colab session), ``./artifacts`` is used.
    """
    if os.environ.get(ARTIFACTS_ENV):
        path = Path(os.environ[ARTIFACTS_ENV]).expanduser()
    else:
        root = project_root()
        path = (root if root is not None else Path.cwd()) / "artifacts"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


#: Where Google Drive is mounted on Colab, and where the notebooks keep their artifacts on it.
COLAB_DRIVE_MOUNT = "/content/drive"
COLAB_DRIVE_ARTIFACTS = "/content/drive/MyDrive/unet-clustering/artifacts"


def keep_artifacts_on_drive(folder: str = COLAB_DRIVE_ARTIFACTS) -> Path:
    """On Colab: mount your Google Drive and keep the artifacts in ``folder`` on it.

    Colab gives each notebook its own short-lived machine, so a model that ``03_training``
    saves under ``/content`` is gone when you open ``04_feature_extraction``. On your Drive,
    every notebook finds what the earlier ones wrote, even days later. Colab asks you once to
    allow access. A ``$UNET_ARTIFACTS_DIR`` you set yourself wins over ``folder``.

    If the Drive cannot be mounted (for example, you declined access), a warning says so and
    the artifacts stay on this machine: then run the notebooks one after another in this runtime.

    Called by the setup cell of each notebook that reads or writes artifacts, on Colab only.
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


def figures_dir(profile_name: str) -> Path:
    """Where ``06_visualization`` writes the README figures.

    A real run (``quick`` or ``full``) inside a checkout refreshes ``<project>/images``, the
    figures the README shows. A ``smoke`` run, or any run outside a checkout (a bare Colab
    session, which has no ``images/`` to refresh), writes to ``<artifacts>/figures`` instead.
    """
    root = project_root()
    if profile_name == "smoke" or root is None:
        return artifacts_dir() / "figures"
    return root / "images"


#: Which notebook writes which artifact, so a missing file can name its maker.
ARTIFACT_MAKERS: dict[str, str] = {
    "dataset.json": "01_data.ipynb",
    "unet.keras": "03_training.ipynb",
    "metrics.json": "03_training.ipynb",
    "history.csv": "03_training.ipynb",
    "features.npz": "04_feature_extraction.ipynb",
    "features.json": "04_feature_extraction.ipynb",
    "clustering_metrics.json": "05_clustering.ipynb",
}

#: Run times of each notebook measured under the ``quick`` profile on a 2-core CPU (README,
#: "Results"). None of them has been timed on a Colab GPU yet, so no GPU time is claimed.
NOTEBOOK_MINUTES: dict[str, str] = {
    "01_data.ipynb": "under a minute",
    "03_training.ipynb": "about 9 minutes on a 2-core CPU with the quick profile",
    "04_feature_extraction.ipynb": "under a minute",
    "05_clustering.ipynb": "under a minute",
}


class MissingArtifactError(FileNotFoundError):
    """An artifact another notebook should have written is not there."""


def require_artifact(name: str) -> Path:
    """Return the path of artifact ``name``, or explain which notebook makes it."""
    path = artifacts_dir() / name
    if not path.exists():
        maker = ARTIFACT_MAKERS.get(name, "an earlier notebook")
        took = NOTEBOOK_MINUTES.get(maker)
        took_text = f" ({took})" if took else ""
        raise MissingArtifactError(
            f"{path} is missing. Run notebooks/{maker} first{took_text}; it writes {name} into "
            f"{path.parent}. (Set {ARTIFACTS_ENV} if your artifacts live elsewhere.)"
        )
    return path


def atomic_write_bytes(path: Path, payload: bytes) -> Path:
    """Write ``payload`` to a temporary file beside ``path``, then rename it into place.

    A run killed half-way leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        # mkstemp creates owner-only files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, content: dict[str, Any]) -> Path:
    """Write ``content`` as indented JSON, atomically."""
    text = json.dumps(content, indent=2, sort_keys=True, default=_json_default) + "\n"
    return atomic_write_bytes(Path(path), text.encode("utf-8"))


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, Paths: turn into plain JSON values.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} as JSON")
