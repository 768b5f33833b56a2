"""Oxford-IIIT Pet through TensorFlow Datasets, online or from a local copy, and its tf.data pipelines.

Taught in ``01_data``; every later notebook loads its images through :func:`make_datasets`.

This is the only module that knows ``tensorflow_datasets`` and ``tf.data``. Loading always goes
through the real tfds ``oxford_iiit_pet`` builder and ``tfds.load``:

* **Online** (Colab), tfds downloads the two official archives (about 800 MB) and prepares them.
* **Offline**, point ``$OXFORD_PETS_DIR`` (or ``local_dir=``) at a local copy: either a folder in the
  official layout (``images/*.jpg``, ``annotations/trimaps/*.png``, ``annotations/trainval.txt``,
  ``annotations/test.txt``) or a folder holding the two official archives. The copy is checked,
  packed into the builder's download cache under the names tfds expects, and prepared once into
  a project-local data dir; later calls reuse the prepared TFRecords.

Trimaps store 1 = pet, 2 = background, 3 = border; the pipelines subtract 1 so that class ``i`` is
``config.CLASS_NAMES[i]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import socket
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from unet_clustering import config

# How strong the training augmentation is, and its named strengths, are defined in ``config``
# (which imports no framework), so that ``arrays`` augments with the same settings where
# TensorFlow is missing; ``data.AugmentOptions`` and ``data.AUGMENTATIONS`` remain their names here.
from unet_clustering.config import AUGMENTATIONS, AugmentOptions  # noqa: F401

# Without this, TensorFlow may wait on a cloud-metadata probe before touching the file system.
os.environ.setdefault("NO_GCE_CHECK", "true")

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from tensorflow_datasets.core.download import resource as tfds_resource  # noqa: E402

DATASET_NAME = "oxford_iiit_pet"
SOURCE_ENV = "OXFORD_PETS_DIR"
#: Where prepared copies of a local source go (default: ``<project>/data/tfds``).
PREPARED_ENV = "UNET_TFDS_DIR"
CLASS_NAMES = config.CLASS_NAMES
NUM_CLASSES = config.NUM_CLASSES
#: Stored trimap value of class 0 (pet); 2 is background and 3 the border.
TRIMAP_OFFSET = 1
ARCHIVE_NAMES = ("images.tar.gz", "annotations.tar.gz")
SPLIT_FILES = {"train": "trainval.txt", "test": "test.txt"}
#: ``host:port`` probed to decide whether tfds' download can work (default: the builder's download host).
PROBE_ENV = "UNET_DATASET_PROBE"
#: Seconds to wait for the dataset's download host before declaring the machine offline.
NETWORK_PROBE_TIMEOUT_S = 4.0
REPORT_FILE = "local_source_report.json"
JPEG_QUALITY = 95


class DatasetUnavailableError(RuntimeError):
    """Neither a local copy nor the internet can provide Oxford-IIIT Pet."""


class LocalSourceError(ValueError):
    """The local copy named by ``$OXFORD_PETS_DIR`` / ``local_dir`` is not usable."""


# --------------------------------------------------------------------------------------------
# Where the data comes from
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DataSource:
    """Where ``tfds.load`` reads from, and what the local copy's check found."""

    kind: str  # "tfds" (download or already prepared) | "local-folder" | "local-archives"
    data_dir: str | None  # None: tfds' default data dir
    local_path: str | None = None
    report: dict[str, Any] = dataclasses.field(default_factory=dict)
    prepare_s: float = 0.0

    def describe(self) -> str:
        if self.kind == "tfds":
            return f"tfds download/cache in {self.data_dir or tfds_default_data_dir()}"
        return f"local copy {self.local_path} (prepared in {self.data_dir})"


def tfds_default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def _builder_url_infos() -> dict[str, tuple[str, Any]]:
    """``{archive file name: (url, UrlInfo)}`` as registered by the real builder."""
    builder_class = tfds.builder_cls(DATASET_NAME)
    infos = {}
    for url, info in builder_class.url_infos.items():
        infos[info.filename or url.rsplit("/", 1)[-1]] = (url, info)
    missing = [name for name in ARCHIVE_NAMES if name not in infos]
    if missing:
        raise RuntimeError(
            f"The installed tensorflow-datasets registers no {missing} for {DATASET_NAME}; "
            "this project expects tensorflow-datasets>=4.9.6."
        )
    return infos


def _host_reachable(host: str, port: int = 443, timeout: float = NETWORK_PROBE_TIMEOUT_S) -> bool:
    """Connect to ``host`` within ``timeout`` seconds, DNS included (which has no timeout of its own)."""
    outcome: dict[str, bool] = {}

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome["ok"] = True
        except OSError:
            outcome["ok"] = False

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
    return outcome.get("ok", False)


def _is_prepared(data_dir: str | None) -> bool:
    if not (Path(data_dir or tfds_default_data_dir()) / DATASET_NAME).is_dir():
        return False
    try:
        return tfds.builder(DATASET_NAME, data_dir=data_dir).is_prepared()
    except Exception:  # noqa: BLE001 - an unreadable data dir simply is not prepared
        return False


def _unavailable_message(host: str) -> str:
    return (
        f"Oxford-IIIT Pet is not available: the download host {host} cannot be reached "
        f"within {NETWORK_PROBE_TIMEOUT_S:.0f} s and no local copy is configured.\n"
        "Fix it in one of two ways:\n"
        "  1. Connect to the internet (for example run on Colab); tfds then downloads the "
        "dataset (about 800 MB) once.\n"
        f"  2. Point the environment variable {SOURCE_ENV} (or local_dir=...) at a local copy: "
        "a folder in the official layout (images/*.jpg, annotations/trimaps/*.png, "
        "annotations/trainval.txt, annotations/test.txt), or a folder holding the two official "
        "archives images.tar.gz and annotations.tar.gz."
    )


def resolve_source(local_dir: str | os.PathLike | None = None, data_dir: str | None = None) -> DataSource:
    """Decide where the dataset comes from, and make sure ``tfds.load`` will find it.

    ``local_dir`` (else ``$OXFORD_PETS_DIR``) names a local copy, which is checked and prepared
    once. Without one, tfds' own download is used; if the dataset is not already prepared and
    the download host cannot be reached, :class:`DatasetUnavailableError` is raised within
    seconds instead of after minutes of retries.
    """
    local = local_dir if local_dir is not None else os.environ.get(SOURCE_ENV) or None
    if local:
        return prepare_local_copy(Path(local), data_dir=data_dir)
    if _is_prepared(data_dir):
        return DataSource(kind="tfds", data_dir=data_dir)
    host, port = urlparse(next(iter(_builder_url_infos().values()))[0]).hostname or "", 443
    if os.environ.get(PROBE_ENV):
        host, _, port_text = os.environ[PROBE_ENV].rpartition(":")
        port = int(port_text)
    if not _host_reachable(host, port):
        raise DatasetUnavailableError(_unavailable_message(host))
    return DataSource(kind="tfds", data_dir=data_dir)


# --------------------------------------------------------------------------------------------
# Local copies: check, pack into tfds' download cache, prepare
# --------------------------------------------------------------------------------------------


def _source_layout(path: Path) -> str:
    if not path.exists():
        raise LocalSourceError(f"{SOURCE_ENV} / local_dir points to {path}, which does not exist.")
    if all((path / name).is_file() for name in ARCHIVE_NAMES):
        return "local-archives"
    needed = [path / "images", path / "annotations" / "trimaps"] + [
        path / "annotations" / name for name in SPLIT_FILES.values()
    ]
    missing = [str(item.relative_to(path)) for item in needed if not item.exists()]
    if missing:
        raise LocalSourceError(
            f"{path} is not a copy of Oxford-IIIT Pet: it lacks {', '.join(missing)}. Expected either "
            "the official layout (images/*.jpg, annotations/trimaps/*.png, annotations/trainval.txt, "
            "annotations/test.txt) or the two archives images.tar.gz and annotations.tar.gz."
        )
    return "local-folder"


def _fingerprint(path: Path, layout: str) -> str:
    digest = hashlib.sha256(str(path.resolve()).encode())
    if layout == "local-archives":
        for name in ARCHIVE_NAMES:
            stat = (path / name).stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    else:
        for name in SPLIT_FILES.values():
            digest.update((path / "annotations" / name).read_bytes())
        images = sorted((path / "images").iterdir())
        digest.update(f"{len(images)}:{sum(item.stat().st_size for item in images)}".encode())
    return digest.hexdigest()[:12]


def prepared_root() -> Path:
    """Parent folder of prepared local copies: ``$UNET_TFDS_DIR``, else ``<project>/data/tfds``."""
    if os.environ.get(PREPARED_ENV):
        return Path(os.environ[PREPARED_ENV]).expanduser()
    root = config.project_root()
    return (root if root is not None else Path.cwd()) / "data" / "tfds"


def prepare_local_copy(path: Path, data_dir: str | None = None) -> DataSource:
    """Check a local copy, seed tfds' download cache with it, and prepare it once.

    The real ``oxford_iiit_pet`` builder does the preparation; this function only puts the two
    archives where its download manager looks for them. Later calls find the prepared dataset
    and return at once.
    """
    path = Path(path).expanduser()
    layout = _source_layout(path)
    if data_dir is None:
        data_dir = str(prepared_root() / f"{DATASET_NAME}-{_fingerprint(path, layout)}")
    report_path = Path(data_dir) / REPORT_FILE
    if _is_prepared(data_dir):
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        return DataSource(kind=layout, data_dir=data_dir, local_path=str(path), report=report)

    started = time.perf_counter()
    downloads = Path(data_dir) / "downloads"
    if layout == "local-archives":
        archives = {name: (path / name).read_bytes() for name in ARCHIVE_NAMES}
        report = {
            "checked": False,
            "note": "archives are used as they are; tfds' builder fixes known bad files",
        }
    else:
        archives, report = pack_local_folder(path)
    _seed_download_cache(downloads, archives)
    builder = tfds.builder(DATASET_NAME, data_dir=data_dir)
    builder.download_and_prepare()
    # The prepared TFRecords hold everything; the archives and their extracted copies are spare.
    shutil.rmtree(downloads, ignore_errors=True)
    report["prepared_splits"] = {name: split.num_examples for name, split in builder.info.splits.items()}
    config.write_json(report_path, report)
    return DataSource(
        kind=layout,
        data_dir=data_dir,
        local_path=str(path),
        report=report,
        prepare_s=time.perf_counter() - started,
    )


def _seed_download_cache(downloads: Path, archives: dict[str, bytes]) -> None:
    """Write each archive under the file name tfds' download manager gives its registered URL."""
    target = downloads / DATASET_NAME
    target.mkdir(parents=True, exist_ok=True)
    for name, (url, url_info) in _builder_url_infos().items():
        if name not in archives:
            continue
        destination = target / tfds_resource.get_dl_fname(url, url_info.checksum)
        config.atomic_write_bytes(destination, archives[name])
        tfds_resource.write_info_file(
            url=url,
            path=destination,
            dataset_name=DATASET_NAME,
            original_fname=name,
            url_info=url_info,
        )


def _check_image(data: bytes) -> tuple[bytes | None, str | None, str | None]:
    """Return ``(jpeg_bytes, reencoded_from, problem)`` for one image file's bytes.

    Files that are not RGB JPEGs (PNG, GIF, grayscale, RGBA, CMYK) are re-encoded as RGB JPEGs, so
    the builder and TensorFlow's decoders see what their name promises.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        return None, None, "empty file"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, mode = image.format, image.mode
            image.load()  # a truncated file fails here, not later inside TensorFlow
            if image_format == "JPEG" and mode == "RGB":
                return data, None, None
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return None, None, f"unreadable image ({type(error).__name__}: {error})"
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue(), f"{image_format} {mode}", None


def _check_trimap(data: bytes, image_size: tuple[int, int]) -> str | None:
    """Return a problem description, or ``None`` when the trimap is usable."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        return "empty trimap"
    try:
        with Image.open(io.BytesIO(data)) as trimap:
            values = np.asarray(trimap)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return f"unreadable trimap ({type(error).__name__}: {error})"
    if values.ndim != 2:
        return f"trimap has shape {values.shape}, expected one channel"
    if values.shape[::-1] != tuple(image_size):
        return (
            f"trimap is {values.shape[1]}x{values.shape[0]} but its image is {image_size[0]}x{image_size[1]}"
        )
    unexpected = sorted(set(np.unique(values).tolist()) - {1, 2, 3})
    if unexpected:
        return f"trimap has values {unexpected} outside {{1, 2, 3}}"
    return None


def _image_size(jpeg: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as image:
        return image.size


def pack_local_folder(path: Path) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Check every listed example of a local folder and pack the usable ones as the two archives.

    Returns ``({archive name: bytes}, report)``. The report counts and names every example left
    out (missing, empty, unreadable, mismatched trimap, malformed split line), every image
    re-encoded to JPEG, and images on disk that no split file lists, so nothing is dropped
    silently.
    """
    images_dir = path / "images"
    annotations_dir = path / "annotations"
    trimaps_dir = annotations_dir / "trimaps"
    xmls_dir = annotations_dir / "xmls"
    skipped: list[dict[str, str]] = []
    reencoded: list[dict[str, str]] = []
    dropped_xmls: list[str] = []
    kept_lines: dict[str, list[str]] = {}
    image_members: dict[str, bytes] = {}
    annotation_members: dict[str, bytes] = {}
    listed: set[str] = set()

    for split, file_name in SPLIT_FILES.items():
        kept_lines[split] = []
        for number, raw_line in enumerate((annotations_dir / file_name).read_text().splitlines(), 1):
            line = raw_line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) != 4 or not all(field.isdigit() for field in fields[1:]):
                skipped.append(
                    {"split": split, "name": f"{file_name}:{number}", "reason": f"malformed line {line!r}"}
                )
                continue
            name = fields[0]
            listed.add(name)
            problem = None
            image_path, trimap_path = images_dir / f"{name}.jpg", trimaps_dir / f"{name}.png"
            if not image_path.is_file():
                problem = f"listed in {file_name} but {image_path.name} is missing"
            elif not trimap_path.is_file():
                problem = f"listed in {file_name} but trimaps/{trimap_path.name} is missing"
            if problem is None:
                jpeg, reencoded_from, problem = _check_image(image_path.read_bytes())
            if problem is None:
                problem = _check_trimap(trimap_path.read_bytes(), _image_size(jpeg))
            if problem is not None:
                skipped.append({"split": split, "name": name, "reason": problem})
                continue
            if reencoded_from and f"images/{name}.jpg" not in image_members:
                reencoded.append({"name": name, "from": reencoded_from})
            image_members[f"images/{name}.jpg"] = jpeg
            annotation_members[f"annotations/trimaps/{name}.png"] = trimap_path.read_bytes()
            xml_path = xmls_dir / f"{name}.xml"
            if xml_path.is_file():
                try:
                    ElementTree.fromstring(xml_path.read_bytes()).find("object").find("bndbox")
                    annotation_members[f"annotations/xmls/{name}.xml"] = xml_path.read_bytes()
                except (ElementTree.ParseError, AttributeError):
                    dropped_xmls.append(name)
            kept_lines[split].append(" ".join(fields))

    for split, file_name in SPLIT_FILES.items():
        annotation_members[f"annotations/{file_name}"] = ("\n".join(kept_lines[split]) + "\n").encode()
    unlisted = sorted(item.stem for item in images_dir.glob("*.jpg") if item.stem not in listed)
    report = {
        "checked": True,
        "listed": {
            split: len(kept_lines[split]) + sum(1 for item in skipped if item["split"] == split)
            for split in SPLIT_FILES
        },
        "kept": {split: len(lines) for split, lines in kept_lines.items()},
        "skipped": skipped,
        "reencoded": reencoded,
        "unlisted_images": unlisted,
        "dropped_head_boxes": dropped_xmls,
    }
    archives = {"images.tar.gz": _tar(image_members), "annotations.tar.gz": _tar(annotation_members)}
    return archives, report


def _tar(members: dict[str, bytes]) -> bytes:
    # JPEGs and PNGs do not compress further; an uncompressed tar is what the official archives are too.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, payload in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def report_summary(report: dict[str, Any]) -> str:
    """One readable paragraph about what the local copy's check changed or left out."""
    if not report.get("checked"):
        return "Local archives used as they are."
    lines = [f"Kept {report['kept']} of the listed {report['listed']} examples."]
    if report["skipped"]:
        lines.append(f"Skipped {len(report['skipped'])}:")
        lines += [f"  - {item['name']} ({item['split']}): {item['reason']}" for item in report["skipped"]]
    if report["reencoded"]:
        names = ", ".join(f"{item['name']} ({item['from']})" for item in report["reencoded"])
        lines.append(f"Re-encoded {len(report['reencoded'])} non-JPEG image(s) as RGB JPEG: {names}.")
    if report["unlisted_images"]:
        lines.append(
            f"{len(report['unlisted_images'])} image(s) are in no split file and are not used: "
            + ", ".join(report["unlisted_images"])
        )
    if report["dropped_head_boxes"]:
        lines.append(f"Ignored {len(report['dropped_head_boxes'])} malformed head-box XML file(s).")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load(
    split: str | list[str] = ("train", "test"),
    local_dir: str | os.PathLike | None = None,
    data_dir: str | None = None,
    **load_kwargs: Any,
) -> tuple[Any, tfds.core.DatasetInfo, DataSource]:
    """``tfds.load('oxford_iiit_pet')``, the same call online and offline.

    Returns ``(datasets, info, source)``: ``datasets`` is one ``tf.data.Dataset`` of raw examples
    (``image``, ``segmentation_mask``, ``label``, ``species``, ``file_name``, ``head_bbox``) per
    requested split.
    """
    source = resolve_source(local_dir, data_dir)
    datasets, info = tfds.load(
        DATASET_NAME,
        split=list(split) if isinstance(split, (list, tuple)) else split,
        data_dir=source.data_dir,
        with_info=True,
        **load_kwargs,
    )
    return datasets, info, source


def preprocess(example: dict[str, tf.Tensor], image_size: int) -> dict[str, tf.Tensor]:
    """Resize and relabel one raw example.

    The image is resized bilinearly (with antialiasing) and scaled to float32 in [0, 1]. The mask
    is resized with nearest neighbour, so every pixel keeps a real class, and shifted from the
    trimap's 1, 2, 3 to the class indices 0, 1, 2 of :data:`CLASS_NAMES`.
    """
    image = tf.image.resize(
        tf.cast(example["image"], tf.float32) / 255.0, (image_size, image_size), antialias=True
    )
    mask = tf.image.resize(example["segmentation_mask"], (image_size, image_size), method="nearest")
    return {
        "image": tf.clip_by_value(image, 0.0, 1.0),
        "mask": tf.cast(mask, tf.int32) - TRIMAP_OFFSET,
        "label": example["label"],
        "species": example["species"],
        "file_name": example["file_name"],
    }


def augment_pair(
    image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor, options: AugmentOptions = AugmentOptions()
) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply ONE random geometric transform to image and mask together, then colour jitter to the image.

    ``seed`` is a shape-(2,) integer tensor; the same seed gives the same result. The zoom resizes
    the image bilinearly and the mask with nearest neighbour, and both are cropped at the same
    offset and flipped together, so labels stay on their pixels.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=6)
    size = tf.shape(image)[0:2]
    scale = tf.random.stateless_uniform([], seeds[0], 1.0, options.max_scale)
    scaled_size = tf.cast(tf.math.ceil(tf.cast(size, tf.float32) * scale), tf.int32)
    scaled_image = tf.image.resize(image, scaled_size)
    scaled_mask = tf.cast(tf.image.resize(mask, scaled_size, method="nearest"), tf.float32)
    stacked = tf.concat([scaled_image, scaled_mask], axis=-1)
    stacked = tf.image.stateless_random_crop(stacked, tf.concat([size, [4]], axis=0), seed=seeds[1])
    if options.flip:
        stacked = tf.image.stateless_random_flip_left_right(stacked, seed=seeds[2])
    image, mask = stacked[..., :3], tf.cast(tf.round(stacked[..., 3:]), tf.int32)
    if options.color_jitter:
        image = tf.image.stateless_random_brightness(image, options.brightness, seed=seeds[3])
        image = tf.image.stateless_random_contrast(image, *options.contrast, seed=seeds[4])
        image = tf.image.stateless_random_saturation(image, *options.saturation, seed=seeds[5])
        image = tf.clip_by_value(image, 0.0, 1.0)
    return image, mask


def make_pipeline(
    examples: tf.data.Dataset,
    image_size: int,
    batch_size: int,
    training: bool = False,
    seed: int | None = None,
    augment: AugmentOptions | None = AugmentOptions(),
    keep_metadata: bool = False,
) -> tf.data.Dataset:
    """Turn raw tfds examples into batches of ``(image, mask)``.

    Order: decode and resize -> ``cache()`` -> (training only: shuffle, then augment with fresh
    random transforms every epoch) -> batch -> prefetch. Augmenting after the cache is what makes
    each epoch see a new flip and crop. With ``keep_metadata`` the batches are dictionaries that
    also carry ``label``, ``species`` and ``file_name``.
    """
    seed = config.get_seed(seed)
    prepared = examples.map(
        lambda example: preprocess(example, image_size), num_parallel_calls=tf.data.AUTOTUNE
    ).cache()
    if training:
        prepared = prepared.shuffle(1024, seed=seed, reshuffle_each_iteration=True)
        if augment is not None:
            # One pair of integers per example, new ones every epoch, reproducible from ``seed``.
            random_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

            def augment_example(example: dict[str, tf.Tensor], pair_seed: tf.Tensor) -> dict[str, tf.Tensor]:
                image, mask = augment_pair(example["image"], example["mask"], pair_seed, augment)
                return {**example, "image": image, "mask": mask}

            prepared = tf.data.Dataset.zip(prepared, random_seeds).map(
                augment_example, num_parallel_calls=tf.data.AUTOTUNE
            )
    if not keep_metadata:
        prepared = prepared.map(
            lambda example: (example["image"], example["mask"]), num_parallel_calls=tf.data.AUTOTUNE
        )
    return prepared.batch(batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass
class Datasets:
    """The three pipelines of a run, and where they came from."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    counts: dict[str, int]
    image_size: int
    batch_size: int
    source: DataSource
    info: Any

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": DATASET_NAME,
            "source": self.source.kind,
            "source_path": self.source.local_path,
            "data_dir": self.source.data_dir,
            "counts": self.counts,
            "image_size": self.image_size,
            "batch_size": self.batch_size,
            "class_names": list(CLASS_NAMES),
        }


def make_datasets(
    profile: config.Profile | str | None = None,
    local_dir: str | os.PathLike | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    image_size: int | None = None,
    augment: AugmentOptions | None = AugmentOptions(),
    keep_metadata: bool = False,
) -> Datasets:
    """Train, validation and test pipelines for a run profile (taught in ``01_data``).

    The validation examples are the last ``validation_fraction`` of tfds' ``train`` split (the
    official trainval list); the test split is only ever used for the final evaluation.
    """
    profile = profile if isinstance(profile, config.Profile) else config.get_profile(profile)
    image_size = image_size or profile.image_size
    batch_size = batch_size or profile.batch_size
    (train_examples, test_examples), info, source = load(["train", "test"], local_dir=local_dir)
    counts = config.split_sizes(info.splits["train"].num_examples, info.splits["test"].num_examples, profile)
    fit_examples = train_examples.take(counts["train"])
    validation_examples = train_examples.skip(counts["train"]).take(counts["validation"])
    common = {
        "image_size": image_size,
        "batch_size": batch_size,
        "seed": seed,
        "keep_metadata": keep_metadata,
    }
    return Datasets(
        train=make_pipeline(fit_examples, training=True, augment=augment, **common),
        validation=make_pipeline(validation_examples, **common),
        test=make_pipeline(test_examples.take(counts["test"]), **common),
        counts=counts,
        image_size=image_size,
        batch_size=batch_size,
        source=source,
        info=info,
    )


def take_arrays(dataset: tf.data.Dataset, max_examples: int | None = None) -> dict[str, np.ndarray]:
    """Collect a batched pipeline into numpy arrays (``image``, ``mask`` and any metadata)."""
    collected: dict[str, list[np.ndarray]] = {}
    total = 0
    for batch in dataset.as_numpy_iterator():
        batch = batch if isinstance(batch, dict) else {"image": batch[0], "mask": batch[1]}
        for key, value in batch.items():
            collected.setdefault(key, []).append(value)
        total += len(batch["image"])
        if max_examples is not None and total >= max_examples:
            break
    arrays = {key: np.concatenate(values)[:max_examples] for key, values in collected.items()}
    if "file_name" in arrays:
        arrays["file_name"] = np.array(
            [name.decode() if isinstance(name, bytes) else name for name in arrays["file_name"]]
        )
    return arrays


def split_arrays(
    split: str = "test",
    profile: config.Profile | str | None = None,
    local_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    max_examples: int | None = None,
) -> dict[str, np.ndarray]:
    """One split, preprocessed but never augmented, as numpy arrays.

    Returns ``image`` ``(N, S, S, 3)``, ``mask`` ``(N, S, S, 1)``, ``label`` (breed), ``species``
    and ``file_name``. The profile's example limit applies (``max_test_examples`` for ``test``,
    ``max_train_examples`` for ``train``) unless ``max_examples`` is given. Used by notebooks 03-06
    to look at individual images.
    """
    profile = profile if isinstance(profile, config.Profile) else config.get_profile(profile)
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}; got {split!r}.")
    limit = max_examples or (profile.max_test_examples if split == "test" else profile.max_train_examples)
    (examples,), _, _ = load([split], local_dir=local_dir)
    pipeline = make_pipeline(
        examples.take(limit or -1),
        image_size or profile.image_size,
        profile.batch_size,
        keep_metadata=True,
    )
    return take_arrays(pipeline)


def find_example(
    file_name: str, split: str = "test", local_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """One raw example at full resolution, by its file name (for example ``"Abyssinian_201.jpg"``).

    Returns numpy values: ``image`` uint8 ``(H, W, 3)``, ``segmentation_mask`` with the trimap's
    stored values 1-3, ``label``, ``species`` and ``file_name``. Used by ``06_visualization``.
    """
    (examples,), _, _ = load([split], local_dir=local_dir)
    wanted = tf.constant(file_name)
    for example in examples.filter(lambda example: tf.equal(example["file_name"], wanted)).take(1):
        found = {key: value.numpy() for key, value in example.items()}
        found["file_name"] = found["file_name"].decode()
        return found
    raise KeyError(f"No example named {file_name!r} in the {split!r} split.")


def label_names() -> dict[str, list[str]]:
    """Names of the ``label`` (37 breeds) and ``species`` (cat, dog) fields, as tfds declares them."""
    feature_info = tfds.builder(DATASET_NAME, data_dir=prepared_root()).info.features
    return {"label": list(feature_info["label"].names), "species": list(feature_info["species"].names)}


# --------------------------------------------------------------------------------------------
# Looking at the data
# --------------------------------------------------------------------------------------------


def dataset_statistics(examples: tf.data.Dataset) -> dict[str, Any]:
    """Image sizes and the pixel count of each class in the full-resolution trimaps."""
    widths, heights = [], []
    pixel_counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    for example in examples.as_numpy_iterator():
        height, width = example["image"].shape[:2]
        widths.append(width)
        heights.append(height)
        pixel_counts += np.bincount(
            example["segmentation_mask"].reshape(-1).astype(np.int64) - TRIMAP_OFFSET, minlength=NUM_CLASSES
        )[:NUM_CLASSES]
    return {
        "num_examples": len(widths),
        "widths": np.array(widths),
        "heights": np.array(heights),
        "class_pixels": dict(zip(CLASS_NAMES, pixel_counts.tolist(), strict=True)),
    }


def measure_throughput(dataset: tf.data.Dataset, epochs: int = 3) -> dict[str, float]:
    """Images per second delivered by a batched pipeline, over ``epochs`` full passes.

    The first pass fills the cache (decoding and resizing); later passes show the steady state
    that training sees.
    """
    timings = []
    for _ in range(epochs):
        started, images = time.perf_counter(), 0
        for batch in dataset:
            image_batch = batch["image"] if isinstance(batch, dict) else batch[0]
            images += int(image_batch.shape[0])
        timings.append((images, time.perf_counter() - started))
    steady = timings[1:] or timings
    return {
        "first_epoch_images_per_s": timings[0][0] / timings[0][1],
        "images_per_s": sum(count for count, _ in steady) / sum(seconds for _, seconds in steady),
        "images_per_epoch": timings[0][0],
    }


def describe_source(local_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """What ``python -m unet_clustering.data`` prints: source and examples per split."""
    started = time.perf_counter()
    _, info, source = load(["train", "test"], local_dir=local_dir)
    return {
        "dataset": DATASET_NAME,
        "source": source.kind,
        "source_path": source.local_path,
        "data_dir": source.data_dir or tfds_default_data_dir(),
        "splits": {name: split.num_examples for name, split in info.splits.items()},
        "skipped": len(source.report.get("skipped", [])),
        "reencoded": len(source.report.get("reencoded", [])),
        "unlisted_images": len(source.report.get("unlisted_images", [])),
        "seconds": round(time.perf_counter() - started, 2),
    }


def main(argv: Iterable[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m unet_clustering.data",
        description="Load Oxford-IIIT Pet through tfds and print one JSON line describing it.",
    )
    parser.add_argument("--local-dir", help=f"local copy of the dataset (default: ${SOURCE_ENV})")
    arguments = parser.parse_args(list(argv) if argv is not None else None)
    try:
        print(json.dumps(describe_source(arguments.local_dir)))
    except (DatasetUnavailableError, LocalSourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
