"""Oxford-IIIT Pet through TensorFlow Datasets, online or from a local copy, and its tf.data pipelines.

Loading always goes through the real tfds ``oxford_iiit_pet`` builder. Online, tfds downloads the
two official archives (about 800 MB). Offline, ``$OXFORD_PETS_DIR`` (or ``local_dir=``) names a
local copy: a folder in the official layout, or a folder holding the two archives. The copy is
checked, packed into tfds' download folder, and prepared once into a folder named by a digest of its
files. Trimaps store 1 = pet, 2 = background, 3 = border; the pipelines subtract 1.

A run may use a folder of your own images and masks instead (``01_data``'s ``DATASET_DIR``, or
``$UNET_DATASET_DIR``; :mod:`unet_clustering.folders` describes the layout). :func:`choose_dataset`
records the choice in ``artifacts/dataset.json`` and :func:`load` follows it, so every notebook reads
the same data through the same pipelines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
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
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from unet_clustering import config, folders

# Without this, TensorFlow may wait on a cloud-metadata probe before touching the file system.
os.environ.setdefault("NO_GCE_CHECK", "true")

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

DATASET_NAME = "oxford_iiit_pet"
SOURCE_ENV = "OXFORD_PETS_DIR"
#: Where prepared copies of a local source go (default: ``<project>/data/tfds``).
PREPARED_ENV = "UNET_TFDS_DIR"
#: Stored trimap value of class 0 (pet); 2 is background and 3 the border.
TRIMAP_OFFSET = 1
ARCHIVE_NAMES = ("images.tar.gz", "annotations.tar.gz")
SPLIT_FILES = {"train": "trainval.txt", "test": "test.txt"}
#: The builder's download host (``tests/test_data_tfds_internals.py`` checks it against tfds).
DOWNLOAD_HOST = "thor.robots.ox.ac.uk"
#: ``host:port`` to probe instead of the download host (the tests name a closed local port).
PROBE_ENV = "UNET_DATASET_PROBE"
NETWORK_PROBE_TIMEOUT_S = 4.0
#: Part of every fingerprint; it changes whenever packing changes what the builder receives.
PACKING_VERSION = "2"


class DatasetUnavailableError(RuntimeError):
    """Neither a local copy nor the internet can provide Oxford-IIIT Pet."""


class LocalSourceError(ValueError):
    """The local copy named by ``$OXFORD_PETS_DIR`` / ``local_dir`` is not usable."""


class _Unusable(Exception):
    """One listed example cannot be used; the message says why."""


@dataclasses.dataclass
class DataSource:
    """Where ``tfds.load`` reads from, and what the local copy's check found."""

    kind: str  # "tfds" (download or already prepared) | "local-folder" | "local-archives" | "folder"
    data_dir: str | None  # None: tfds' default data dir
    local_path: str | None = None
    report: dict[str, Any] = dataclasses.field(default_factory=dict)
    prepare_s: float = 0.0

    def describe(self) -> str:
        if self.kind == "folder":
            return f"your folder {self.local_path}"
        if self.kind == "tfds":
            return f"tfds download/cache in {self.data_dir or _default_data_dir()}"
        return f"local copy {self.local_path} (prepared in {self.data_dir})"


def _default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def resolve_source(local_dir: str | os.PathLike | None = None, data_dir: str | None = None) -> DataSource:
    """Decide where the dataset comes from, and make sure ``tfds.load`` will find it.

    ``local_dir`` (else ``$OXFORD_PETS_DIR``) names a local copy, prepared once. Without one, tfds'
    download is used; if the dataset is not prepared yet and the download host cannot be reached,
    :class:`DatasetUnavailableError` is raised within seconds instead of after minutes of retries.
    """
    local = local_dir if local_dir is not None else os.environ.get(SOURCE_ENV) or None
    if local:
        return prepare_local_copy(Path(local), data_dir=data_dir)
    host, _, port = os.environ.get(PROBE_ENV, f"{DOWNLOAD_HOST}:443").rpartition(":")
    if not _is_prepared(data_dir) and not _host_reachable(host, int(port)):
        raise DatasetUnavailableError(
            f"Oxford-IIIT Pet is not available: the download host {host} cannot be reached within "
            f"{NETWORK_PROBE_TIMEOUT_S:.0f} s and no local copy is configured. Fix it in one of two ways:\n"
            "  1. Connect to the internet (for example run on Colab); tfds then downloads it (800 MB) once.\n"
            f"  2. Point the environment variable {SOURCE_ENV} (or local_dir=...) at a local copy: a folder "
            "in the official layout (images/*.jpg, annotations/trimaps/*.png, annotations/trainval.txt, "
            "annotations/test.txt), or a folder holding the archives images.tar.gz and annotations.tar.gz."
        )
    return DataSource(kind="tfds", data_dir=data_dir)


def _host_reachable(host: str, port: int = 443, timeout: float = NETWORK_PROBE_TIMEOUT_S) -> bool:
    """Connect to ``host`` within ``timeout`` seconds, DNS included (which has no timeout of its own)."""
    reached = []

    def probe() -> None:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
            reached.append(True)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
    return bool(reached)


def _is_prepared(data_dir: str | None) -> bool:
    if not (Path(data_dir or _default_data_dir()) / DATASET_NAME).is_dir():
        return False
    try:
        return tfds.builder(DATASET_NAME, data_dir=data_dir).is_prepared()
    except Exception:  # noqa: BLE001 - an unreadable data dir simply is not prepared
        return False


def prepared_root() -> Path:
    """Parent folder of prepared local copies: ``$UNET_TFDS_DIR``, else ``<project>/data/tfds``."""
    if os.environ.get(PREPARED_ENV):
        return Path(os.environ[PREPARED_ENV]).expanduser()
    return (config.project_root() or Path.cwd()) / "data" / "tfds"


def prepare_local_copy(path: Path, data_dir: str | None = None) -> DataSource:
    """Check a local copy, pack it into tfds' download folder as the two archives, and prepare it once.

    The real builder prepares it into ``data_dir``, by default a folder under :func:`prepared_root`
    named by a digest of every file it reads, so that any change to the copy is prepared anew.
    """
    path = Path(path).expanduser()
    layout = _source_layout(path)
    data_dir = data_dir or str(prepared_root() / f"{DATASET_NAME}-{_fingerprint(path, layout)}")
    source = DataSource(kind=layout, data_dir=data_dir, local_path=str(path))
    report_path = Path(data_dir) / "local_source_report.json"
    if _is_prepared(data_dir):
        source.report = json.loads(report_path.read_text()) if report_path.exists() else {}
        return source
    started, downloads = time.perf_counter(), Path(data_dir) / "downloads"
    try:
        folder = path if layout == "local-folder" else _unpacked(path, downloads / "unpacked")
        source.report = pack_local_folder(folder, downloads / "packed")
        shutil.rmtree(downloads / "unpacked", ignore_errors=True)
        _seed_download_cache(downloads, {name: downloads / "packed" / name for name in ARCHIVE_NAMES})
        builder = tfds.builder(DATASET_NAME, data_dir=data_dir)
        builder.download_and_prepare()
    finally:
        # The prepared TFRecords hold everything; the archives and their extracted copies are spare.
        shutil.rmtree(downloads, ignore_errors=True)
    source.report["prepared_splits"] = {name: info.num_examples for name, info in builder.info.splits.items()}
    report_path.write_text(json.dumps(source.report, indent=2) + "\n")
    source.prepare_s = time.perf_counter() - started
    return source


def _source_layout(path: Path) -> str:
    if not path.exists():
        raise LocalSourceError(f"{SOURCE_ENV} / local_dir points to {path}, which does not exist.")
    if all((path / name).is_file() for name in ARCHIVE_NAMES):
        return "local-archives"
    needed = ["images", "annotations/trimaps", *(f"annotations/{name}" for name in SPLIT_FILES.values())]
    if missing := [name for name in needed if not (path / name).exists()]:
        raise LocalSourceError(
            f"{path} is not a copy of Oxford-IIIT Pet: it lacks {', '.join(missing)}. Expected the official "
            "layout (images/*.jpg, annotations/trimaps/*.png, annotations/trainval.txt, annotations/test.txt) "
            "or the two archives images.tar.gz and annotations.tar.gz."
        )
    return "local-folder"


def _fingerprint(path: Path, layout: str) -> str:
    """A digest of the name and content of every file the preparation reads, and of how it packs them."""
    if layout == "local-archives":
        files = [path / name for name in ARCHIVE_NAMES]
    else:
        files = [path / "annotations" / name for name in SPLIT_FILES.values()]
        for folder in ("images", "annotations/trimaps", "annotations/xmls"):
            files += sorted(item for item in (path / folder).glob("*") if item.is_file())
    digest = hashlib.sha256(f"packing {PACKING_VERSION}".encode())
    for item in files:
        with open(item, "rb") as stream:
            digest.update(f"\0{item.relative_to(path)}\0{os.fstat(stream.fileno()).st_size}\0".encode())
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _unpacked(path: Path, folder: Path) -> Path:
    """Extract the two archives into ``folder``, naming a damaged one before anything else reads it."""
    for name in ARCHIVE_NAMES:
        try:
            with tarfile.open(path / name) as archive:
                # The "data" filter keeps every member inside ``folder`` (Python 3.10.12 and later).
                archive.extractall(folder, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
            raise LocalSourceError(
                f"{path / name} is damaged or incomplete ({error}); get it again."
            ) from error
    if missing := [name for name in SPLIT_FILES.values() if not (folder / "annotations" / name).is_file()]:
        raise LocalSourceError(f"{path / ARCHIVE_NAMES[1]} holds no annotations/{missing[0]}; get it again.")
    return folder


def _seed_download_cache(downloads: Path, archives: dict[str, Path]) -> None:
    """Move each archive to where tfds' download manager looks for the URL it is registered under.

    The only code that uses tfds internals: the builder class's ``url_infos``, and ``get_dl_fname``
    and ``write_info_file`` of ``tfds...download.resource``. ``tests/test_data_tfds_internals.py``
    fails, naming the tfds version, if a release changes them.
    """
    try:
        from tensorflow_datasets.core.download import resource

        url_infos = tfds.builder_cls(DATASET_NAME).url_infos
        registered = {
            (info.filename or url.rsplit("/", 1)[-1]): (url, info) for url, info in url_infos.items()
        }
        (downloads / DATASET_NAME).mkdir(parents=True, exist_ok=True)
        for name, archive in archives.items():
            url, info = registered[name]
            destination = downloads / DATASET_NAME / resource.get_dl_fname(url, info.checksum)
            os.replace(archive, destination)
            resource.write_info_file(
                url=url, path=destination, dataset_name=DATASET_NAME, original_fname=name, url_info=info
            )
    except (ImportError, AttributeError, TypeError, KeyError) as error:
        raise RuntimeError(
            f"tensorflow-datasets {tfds.__version__} stores downloads in a way this project does not know "
            f"({type(error).__name__}: {error}); install tensorflow-datasets 4.9.x."
        ) from error


def pack_local_folder(path: Path, destination: Path) -> dict[str, Any]:
    """Check every listed example of a local folder, and pack the usable ones as the two archives.

    Writes ``images.tar.gz`` and ``annotations.tar.gz`` (uncompressed tars, like the official ones)
    into ``destination`` and returns a report that names every example left out and why, every
    duplicate line, every name listed in both splits (kept in test only), every re-encoded file,
    and the images no split lists. Images may end in ``.jpg`` or ``.jpeg``, in any case.
    """
    path, destination = Path(path), Path(destination)
    splits, report = _read_splits(path / "annotations")
    files = {
        "image": _files_by_stem(path / "images", (".jpg", ".jpeg")),
        "trimap": _files_by_stem(path / "annotations" / "trimaps", (".png",)),
        "xml": _files_by_stem(path / "annotations" / "xmls", (".xml",)),
    }
    destination.mkdir(parents=True, exist_ok=True)
    with (
        tarfile.open(destination / ARCHIVE_NAMES[0], "w") as images,
        tarfile.open(destination / ARCHIVE_NAMES[1], "w") as annotations,
    ):
        archives = (images, annotations)
        for split, entries in splits.items():
            kept = [line for name, line in entries.items() if _pack(name, split, files, archives, report)]
            if not kept:
                raise _no_examples(path / "annotations" / SPLIT_FILES[split], split, report)
            _add_member(annotations, f"annotations/{SPLIT_FILES[split]}", ("\n".join(kept) + "\n").encode())
            report["kept"][split] = len(kept)
    report["unlisted_images"] = sorted(set(files["image"]) - set(splits["train"]) - set(splits["test"]))
    return report


def _read_splits(annotations: Path) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """``{split: {name: line}}`` and the report so far; a name in both split files stays in test only."""
    report: dict[str, Any] = {"checked": True, "listed": {}, "kept": {}, "skipped": [], "duplicates": []}
    report.update(reencoded=[], dropped_head_boxes=[], in_both_splits=[])
    splits: dict[str, dict[str, str]] = {split: {} for split in SPLIT_FILES}
    for split, file_name in SPLIT_FILES.items():
        try:
            text = (annotations / file_name).read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise LocalSourceError(f"{annotations / file_name} is not UTF-8 text ({error}).") from error
        # Some editors start a file with a byte-order mark, which is no part of the first name.
        lines = enumerate((line.split() for line in text.replace("\ufeff", "").splitlines()), 1)
        lines = [(number, fields) for number, fields in lines if fields and not fields[0].startswith("#")]
        report["listed"][split] = len(lines)
        for number, fields in lines:
            numbers = [int(field) if field.isascii() and field.isdigit() else 0 for field in fields[1:]]
            if len(fields) != 4 or not (1 <= numbers[0] <= 37 and numbers[1] in (1, 2)):
                reason = (
                    f"malformed line {' '.join(fields)!r}; expected: name, class 1-37, species 1-2, breed"
                )
                report["skipped"].append({"split": split, "name": f"{file_name}:{number}", "reason": reason})
            elif fields[0] in splits[split]:
                report["duplicates"].append({"split": split, "name": fields[0]})
            else:
                splits[split][fields[0]] = " ".join(fields)
        if not splits[split]:
            raise _no_examples(annotations / file_name, split, report)
    report["in_both_splits"] = sorted(set(splits["train"]) & set(splits["test"]))
    for name in report["in_both_splits"]:
        del splits["train"][name]
    return splits, report


def _no_examples(split_file: Path, split: str, report: dict[str, Any]) -> LocalSourceError:
    reasons = [f"{item['name']}: {item['reason']}" for item in report["skipped"] if item["split"] == split]
    reasons += [f"{name} is in test.txt too" for name in report["in_both_splits"] if split == "train"]
    return LocalSourceError(f"{split_file} lists no usable example: " + ("; ".join(reasons[:3]) or "none"))


def _files_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Files of ``folder`` by name without suffix, for ``suffixes`` in any case; the first, exact, wins."""
    found: dict[str, Path] = {}
    for item in sorted(folder.glob("*"), key=lambda item: (item.suffix != suffixes[0], item.name)):
        if item.suffix.lower() in suffixes:
            found.setdefault(item.stem, item)
    return found


def _pack(name: str, split: str, files: dict[str, dict[str, Path]], archives: tuple, report: dict) -> bool:
    """Check one listed example and add it to the archives; ``report`` records what was done, or why not."""
    try:
        for kind, missing in (("image", f"{name}.jpg"), ("trimap", f"trimaps/{name}.png")):
            if name not in files[kind]:
                raise _Unusable(f"listed in {SPLIT_FILES[split]} but {missing} is missing")
        image, size, image_was = _check_image(files["image"][name].read_bytes())
        trimap, trimap_was = _check_trimap(files["trimap"][name].read_bytes(), size)
    except _Unusable as problem:
        report["skipped"].append({"split": split, "name": name, "reason": str(problem)})
        return False
    for kind, was in (("image", image_was), ("trimap", trimap_was)):
        if was is not None:
            report["reencoded"].append({"name": name, "file": kind, "from": was})
    _add_member(archives[0], f"images/{name}.jpg", image)
    _add_member(archives[1], f"annotations/trimaps/{name}.png", trimap)
    head_box = files["xml"][name].read_bytes() if name in files["xml"] else None
    if head_box is not None and _head_box_is_readable(head_box):
        _add_member(archives[1], f"annotations/xmls/{name}.xml", head_box)
    elif head_box is not None:
        report["dropped_head_boxes"].append(name)
    return True


def _opened(data: bytes, what: str) -> Image.Image:
    if not data:
        raise _Unusable(f"empty {what}")
    try:
        picture = Image.open(io.BytesIO(data))
        picture.load()  # a truncated file fails here, not later inside TensorFlow
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise _Unusable(f"unreadable {what} ({type(error).__name__}: {error})") from error
    return picture


def _check_image(data: bytes) -> tuple[bytes, tuple[int, int], str | None]:
    """``(jpeg, (width, height), what it was if re-encoded)``: anything but an 8-bit RGB JPEG becomes one."""
    image = _opened(data, "image")
    if image.format == "JPEG" and image.mode == "RGB":
        return data, image.size, None
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # convert() would clip them at 255
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        rgb = Image.fromarray(np.round(np.clip(values, 0, top) * 255 / top).astype(np.uint8)).convert("RGB")
    else:
        rgb = image.convert("RGB")
    return _encoded(rgb, "JPEG"), image.size, f"{image.format} {image.mode}"


def _check_trimap(data: bytes, image_size: tuple[int, int]) -> tuple[bytes, str | None]:
    """``(png, what it was if re-encoded)``: values 1-3 at the image's size, as an 8-bit grey PNG."""
    trimap = _opened(data, "trimap")
    values = np.asarray(trimap)
    if values.ndim != 2:
        raise _Unusable(f"trimap has shape {values.shape}, expected one channel")
    if values.shape[::-1] != tuple(image_size):
        width, height = image_size
        raise _Unusable(f"trimap is {values.shape[1]}x{values.shape[0]} but its image is {width}x{height}")
    if unexpected := sorted(set(np.unique(values).tolist()) - {1, 2, 3}):
        raise _Unusable(f"trimap has values {unexpected} outside {{1, 2, 3}}")
    if (trimap.format, trimap.mode) == ("PNG", "L"):
        return data, None
    # The builder decodes trimaps as 8-bit grey; 16-bit or palette ones are written as such.
    return _encoded(Image.fromarray(values.astype(np.uint8)), "PNG"), f"{trimap.format} {trimap.mode}"


def _encoded(picture: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format, quality=95)
    return buffer.getvalue()


def _head_box_is_readable(xml: bytes) -> bool:
    """Whether the builder can read the head box of this XML (it stops at the first it cannot)."""
    try:
        root = ElementTree.fromstring(xml)
        box = root.find("object").find("bndbox")
        sizes = [float(root.find(f"size/{key}").text) for key in ("width", "height")]
        [float(box.find(key).text) for key in ("xmin", "ymin", "xmax", "ymax")]
    except (ElementTree.ParseError, AttributeError, TypeError, ValueError):
        return False
    return min(sizes) > 0


def _add_member(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(payload)
    archive.addfile(member, io.BytesIO(payload))


def report_summary(report: dict[str, Any]) -> str:
    """One readable paragraph about what the local copy's check changed or left out."""
    if report.get("folder"):
        lines = [f"{report['pairs']} images with a mask of the same name."]
        if report["unpaired"]:
            lines.append(f"{len(report['unpaired'])} file(s) without a partner, not used:")
            lines += [f"  - {item}" for item in report["unpaired"]]
        return "\n".join(lines)
    if not report.get("checked"):
        return "Local archives used as they are."
    lines = [f"Kept {report['kept']} of the listed {report['listed']} examples."]
    if report["skipped"]:
        lines.append(f"Skipped {len(report['skipped'])}:")
        lines += [f"  - {item['name']} ({item['split']}): {item['reason']}" for item in report["skipped"]]
    for key, note in (
        ("duplicates", "Ignored {} duplicate split line(s), keeping each name once: {}."),
        ("in_both_splits", "{} name(s) are listed in both trainval.txt and test.txt, kept in test only: {}."),
        ("reencoded", "Re-encoded {} file(s) so that the builder reads them as they look: {}."),
        ("unlisted_images", "{} image(s) are in no split file and are not used: {}."),
        ("dropped_head_boxes", "Ignored {} unreadable head-box XML file(s): {}."),
    ):
        # Entries are names, or dictionaries of a name and details.
        names = [item if isinstance(item, str) else _described(item) for item in report.get(key, [])]
        if names:
            lines.append(note.format(len(names), ", ".join(names)))
    return "\n".join(lines)


def _described(item: dict[str, str]) -> str:
    name, *details = item.values()
    return f"{name} ({', '.join(details)})"


def load(
    split: str | list[str] = ("train", "test"),
    local_dir: str | os.PathLike | None = None,
    data_dir: str | None = None,
    **load_kwargs: Any,
) -> tuple[Any, Any, DataSource]:
    """The data of this run: ``tfds.load('oxford_iiit_pet')``, online or offline, or a folder of your own.

    Returns ``(datasets, info, source)``: one ``tf.data.Dataset`` of raw examples (``image``,
    ``segmentation_mask``, ``label``, ``species``, ``file_name``) per split. Which data is the run's
    choice that ``01_data`` recorded (:func:`choose_dataset`). A folder's examples come in the trimap's
    form, class ``i`` stored as ``i + 1`` (:data:`TRIMAP_OFFSET`), with ``label`` and ``species`` -1,
    so that one pipeline serves both.
    """
    folder = config.dataset_folder()
    if folder is not None:
        return load_folder(folder, split)
    return load_oxford_pets(split, local_dir, data_dir, **load_kwargs)


def load_oxford_pets(
    split: str | list[str] = ("train", "test"),
    local_dir: str | os.PathLike | None = None,
    data_dir: str | None = None,
    **load_kwargs: Any,
) -> tuple[Any, tfds.core.DatasetInfo, DataSource]:
    """``tfds.load('oxford_iiit_pet')``, the same call online and offline."""
    source = resolve_source(local_dir, data_dir)
    split = list(split) if isinstance(split, (list, tuple)) else split
    datasets, info = tfds.load(
        DATASET_NAME, split=split, data_dir=source.data_dir, with_info=True, **load_kwargs
    )
    return datasets, info, source


@dataclasses.dataclass(frozen=True)
class SplitCount:
    num_examples: int


@dataclasses.dataclass(frozen=True)
class FolderInfo:
    """What ``tfds.load`` would say about a folder: its name, splits and features."""

    name: str
    splits: dict[str, SplitCount]
    features: dict[str, tf.TensorSpec]


FOLDER_FEATURES = {
    "image": tf.TensorSpec((None, None, 3), tf.uint8),
    "segmentation_mask": tf.TensorSpec((None, None, 1), tf.uint8),
    "label": tf.TensorSpec((), tf.int64),
    "species": tf.TensorSpec((), tf.int64),
    "file_name": tf.TensorSpec((), tf.string),
}


@functools.lru_cache(maxsize=4)
def _scanned(root: str, stamp: int) -> folders.FolderDataset:
    """Scan a folder once per process while it is unchanged (``stamp``: a digest of its files' states)."""
    return folders.scan_folder(root, seed=config.DEFAULT_SEED)


def scan(folder: str | os.PathLike) -> folders.FolderDataset:
    """:func:`folders.scan_folder` with the project's split seed, cached while no file of the folder changes.

    Every notebook loads the data several times; reading every mask each time would cost seconds per
    thousand images, while the names, sizes and modification times of the files cost milliseconds.
    """
    root = Path(folder).expanduser().resolve()
    states = []
    for path in (root, root / "images", root / "masks"):
        with contextlib.suppress(OSError):
            states += [
                (entry.path, entry.stat().st_mtime_ns, entry.stat().st_size) for entry in os.scandir(path)
            ]
    return _scanned(str(root), hash(tuple(sorted(states))))


def load_folder(folder: str | os.PathLike, split: str | list[str]) -> tuple[Any, FolderInfo, DataSource]:
    """A folder of images and masks (see :mod:`unet_clustering.folders`) as tfds-like examples."""
    found = scan(folder)
    # Class i is stored as values[i] in the files and as i + TRIMAP_OFFSET in the examples.
    lookup = np.zeros(max(found.values) + 1, np.uint8)
    lookup[list(found.values)] = np.arange(found.classes.num_classes) + TRIMAP_OFFSET

    def examples(pairs):
        def generate():
            for image_path, mask_path in pairs:
                yield {
                    "image": folders.read_image(image_path),
                    "segmentation_mask": lookup[folders.read_mask(mask_path)][..., None],
                    "label": -1,
                    "species": -1,
                    "file_name": image_path.name,
                }

        generated = tf.data.Dataset.from_generator(generate, output_signature=FOLDER_FEATURES)
        return generated.apply(tf.data.experimental.assert_cardinality(len(pairs)))

    names = [split] if isinstance(split, str) else list(split)
    unknown = [name for name in names if name not in found.splits]
    if unknown:
        raise ValueError(f"No split {unknown[0]!r} in {found.root}; its splits are {sorted(found.splits)}.")
    info = FolderInfo(
        name=found.root.name,
        splits={name: SplitCount(len(pairs)) for name, pairs in found.splits.items()},
        features=FOLDER_FEATURES,
    )
    report = {"folder": True, "pairs": sum(map(len, found.splits.values())), "unpaired": list(found.unpaired)}
    source = DataSource(kind="folder", data_dir=None, local_path=str(found.root), report=report)
    datasets = [examples(found.splits[name]) for name in names]
    return (datasets[0] if isinstance(split, str) else datasets), info, source


def choose_dataset(folder: str | os.PathLike | None = None) -> config.Classes:
    """Choose the data of this run and record it, with its classes, in ``artifacts/dataset.json``.

    ``folder`` (else ``$UNET_DATASET_DIR``) names a folder of your own images and masks; without one
    the run uses Oxford-IIIT Pet. The folder is checked file by file here, so that a bad file stops
    the first notebook with its name. Every later :func:`load`, in this notebook and the next ones,
    reads this record.
    """
    folder = folder or os.environ.get(config.DATASET_ENV, "").strip() or None
    name, root, classes = DATASET_NAME, None, config.OXFORD_PET_CLASSES
    if folder is not None:
        found = scan(folder)
        name, root, classes = found.root.name, str(found.root), found.classes
    record = {
        "dataset": name,
        "folder": root,
        "class_names": list(classes.names),
        "background": classes.background,
    }
    config.write_json(config.artifact("dataset"), record)
    return classes


def find_example(
    file_name: str, split: str = "test", local_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """One raw example at full resolution, by file name (``"Abyssinian_201.jpg"``), as numpy values.

    ``segmentation_mask`` holds the stored values: class ``i`` as ``i + 1``.
    """
    (examples,), _, _ = load([split], local_dir=local_dir)
    wanted = tf.constant(file_name)
    for example in examples.filter(lambda example: tf.equal(example["file_name"], wanted)).take(1):
        found = {key: value.numpy() for key, value in example.items()}
        return {**found, "file_name": found["file_name"].decode()}
    raise KeyError(f"No example named {file_name!r} in the {split!r} split.")


def label_names() -> dict[str, list[str]]:
    """Names of the ``label`` (37 breeds) and ``species`` (cat, dog) fields, as tfds declares them.

    A folder of your own names neither: both lists are empty.
    """
    if config.dataset_folder() is not None:
        return {"label": [], "species": []}
    features = tfds.builder(DATASET_NAME, data_dir=prepared_root()).info.features
    return {"label": list(features["label"].names), "species": list(features["species"].names)}


# ---- Exported from notebooks/01_data.ipynb: edit the notebook, then run `make export`. ----
def preprocess(example, image_size):
    """Resize one tfds example: the photo bilinearly to [0, 1], the trimap by nearest neighbour to classes 0, 1, ..."""
    image = tf.cast(example["image"], tf.float32) / 255.0
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    mask = tf.image.resize(example["segmentation_mask"], (image_size, image_size), method="nearest")
    return {
        "image": tf.clip_by_value(image, 0.0, 1.0),
        "mask": tf.cast(mask, tf.int32) - TRIMAP_OFFSET,
        "label": example["label"],
        "species": example["species"],
        "file_name": example["file_name"],
    }


def augment_pair(image, mask, seed, max_scale=1.3, colour_jitter=True):
    """One random zoom, crop and flip for an image and its mask together, then colour jitter for the image."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=6)
    size = tf.shape(image)[0:2]
    scale = tf.random.stateless_uniform([], seeds[0], 1.0, max_scale)
    scaled_size = tf.cast(tf.math.ceil(tf.cast(size, tf.float32) * scale), tf.int32)
    scaled_mask = tf.image.resize(mask, scaled_size, method="nearest")
    stacked = tf.concat([tf.image.resize(image, scaled_size), tf.cast(scaled_mask, tf.float32)], axis=-1)
    stacked = tf.image.stateless_random_crop(stacked, tf.concat([size, [4]], axis=0), seed=seeds[1])
    stacked = tf.image.stateless_random_flip_left_right(stacked, seed=seeds[2])
    image, mask = stacked[..., :3], tf.cast(tf.round(stacked[..., 3:]), tf.int32)
    if colour_jitter:
        image = tf.image.stateless_random_brightness(image, 0.1, seed=seeds[3])
        image = tf.image.stateless_random_contrast(image, 0.8, 1.2, seed=seeds[4])
        image = tf.image.stateless_random_saturation(image, 0.8, 1.2, seed=seeds[5])
        image = tf.clip_by_value(image, 0.0, 1.0)
    return image, mask


def shuffle_and_augment(pairs, seed=config.DEFAULT_SEED):
    """Shuffle (image, mask) pairs and give each its own random transform, a new one every epoch."""
    pairs = pairs.shuffle(1024, seed=seed, reshuffle_each_iteration=True)
    # A new pair of integers for every example and every epoch, reproducible from `seed`.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(pairs, seeds).map(
        lambda pair, pair_seed: augment_pair(*pair, pair_seed), num_parallel_calls=tf.data.AUTOTUNE
    )


def make_pipeline(examples, image_size, batch_size, training=False, seed=config.DEFAULT_SEED):
    """Raw tfds examples to batches of (image, mask): resize, cache, [shuffle, augment], batch, prefetch."""
    pairs = examples.map(lambda example: preprocess(example, image_size), num_parallel_calls=tf.data.AUTOTUNE)
    pairs = pairs.map(lambda example: (example["image"], example["mask"])).cache()
    if training:
        pairs = shuffle_and_augment(pairs, seed)
    return pairs.batch(batch_size).prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass
class Datasets:
    """The three pipelines of a run, and how many examples each one holds."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    counts: dict


def make_datasets(profile, seed=config.DEFAULT_SEED, image_size=None):
    """Training (shuffled, augmented), validation (end of tfds' train split) and test pipelines."""
    image_size = image_size or profile.image_size
    (train_examples, test_examples), info, _ = load(["train", "test"])
    counts = config.split_sizes(info.splits["train"].num_examples, info.splits["test"].num_examples, profile)

    def pipeline(examples, training=False):
        return make_pipeline(examples, image_size, profile.batch_size, training=training, seed=seed)

    return Datasets(
        train=pipeline(train_examples.take(counts["train"]), training=True),
        validation=pipeline(train_examples.skip(counts["train"]).take(counts["validation"])),
        test=pipeline(test_examples.take(counts["test"])),
        counts=counts,
    )


def split_arrays(split, profile, max_examples=None, image_size=None):
    """A split resized but not augmented, as numpy arrays: image, mask (N, S, S), label, species, file_name."""
    (examples,), _, _ = load([split])
    limit = max_examples or (profile.max_test_examples if split == "test" else profile.max_train_examples)
    size = image_size or profile.image_size
    batches = examples.take(limit or -1).map(lambda example: preprocess(example, size)).batch(64)
    parts = {}
    for batch in batches.as_numpy_iterator():
        for key, value in batch.items():
            parts.setdefault(key, []).append(value)
    arrays = {key: np.concatenate(values) for key, values in parts.items()}
    arrays["mask"] = arrays["mask"][..., 0]
    arrays["file_name"] = np.array([name.decode() for name in arrays["file_name"]])
    return arrays


# ---- End of the code exported from notebooks/01_data.ipynb. ----


def array_batches(images, masks, batch_size, seed=config.DEFAULT_SEED):
    """Training batches of images ``(N, S, S, 3)`` and masks ``(N, S, S)`` held in memory, shuffled and
    augmented as :func:`make_pipeline` does; ``07_semi_supervised`` trains on pseudo-labels with it. Masks
    may hold any integer label, such as an "ignore this pixel" value: augmentation moves labels, never
    blends them."""
    pairs = tf.data.Dataset.from_tensor_slices((np.asarray(images, np.float32), np.asarray(masks)[..., None]))
    return shuffle_and_augment(pairs, seed).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def describe_source(local_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """What ``python -m unet_clustering.data`` prints: source and examples per split.

    It describes the folder that ``$UNET_DATASET_DIR`` names, if any, else Oxford-IIIT Pet.
    """
    started = time.perf_counter()
    folder = os.environ.get(config.DATASET_ENV, "").strip()
    if folder:
        _, info, source = load_folder(folder, ["train", "test"])
    else:
        _, info, source = load_oxford_pets(["train", "test"], local_dir=local_dir)
    counted = ("skipped", "reencoded", "unlisted_images", "duplicates", "in_both_splits", "unpaired")
    return {
        "dataset": info.name,
        "source": source.kind,
        "source_path": source.local_path,
        "data_dir": None if source.kind == "folder" else source.data_dir or _default_data_dir(),
        "splits": {name: split.num_examples for name, split in info.splits.items()},
        **{key: len(source.report.get(key, [])) for key in counted},
        "seconds": round(time.perf_counter() - started, 2),
    }


def main(argv: Iterable[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m unet_clustering.data",
        description=(
            "Load Oxford-IIIT Pet through tfds (or the folder of images and masks that $UNET_DATASET_DIR "
            "names) and print one JSON line describing it."
        ),
    )
    parser.add_argument("--local-dir", help=f"local copy of the dataset (default: ${SOURCE_ENV})")
    arguments = parser.parse_args(list(argv) if argv is not None else None)
    try:
        # tfds reports its preparation on stdout; stdout keeps only the JSON line.
        with contextlib.redirect_stdout(sys.stderr):
            description = describe_source(arguments.local_dir)
    except (DatasetUnavailableError, LocalSourceError, folders.FolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(description))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
