"""A dataset of your own: a folder of photos and a folder of label masks, checked file by file.

    my_data/
        images/     cat_001.jpg, scan_17.png, ...     (any format Pillow reads)
        masks/      cat_001.png, scan_17.png, ...     (one integer class per pixel, same name, same size)
        classes.json                                  (optional: the class names, see below)
        train.txt, test.txt                           (optional: one name per line; else a seeded split)

Masks hold one integer per pixel: the class indices 0, 1, 2, ... of ``classes.json``, or binary masks
of 0 and 255 (background and foreground). Without ``classes.json`` the classes are inferred from the
values the masks use. ``classes.json`` looks like::

    {"names": ["background", "tumour", "oedema"], "background": "background"}

and may add ``"values": [0, 128, 255]`` when the masks store other values than 0, 1, 2, ...
(class ``i`` is stored as ``values[i]``). "Foreground" means every class but the background.

This module imports no deep-learning framework (nor does ``config``, whose ``Classes`` it returns);
``data`` turns a :class:`FolderDataset` into the same tf.data examples as Oxford-IIIT Pet.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from unet_clustering import config

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif")
CLASSES_FILE = "classes.json"
SPLIT_LISTS = {"train": "train.txt", "test": "test.txt"}
#: Classes travel as uint8 values 1, 2, ... through the pipelines (as the trimap's do).
MAX_CLASSES = 254
#: Share of the pairs that a seeded split puts in the test split when no list files exist.
DEFAULT_TEST_FRACTION = 0.2


class FolderError(ValueError):
    """The folder cannot be used; the message names the file and says why."""


@dataclasses.dataclass(frozen=True)
class FolderDataset:
    """The checked pairs of a folder, split, and its classes."""

    root: Path
    splits: dict[str, list[tuple[Path, Path]]]  #: split -> [(image file, mask file), ...] in name order
    classes: config.Classes
    values: tuple[int, ...]  #: the value that stores class i in the mask files
    #: What is left out, as messages: images without a mask, masks without an image, pairs in no list file.
    unpaired: tuple[str, ...] = ()


def _files_by_stem(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FolderError(f"{folder} is missing: the {what} go in a folder of that name.")
    found: dict[str, Path] = {}
    for item in sorted(folder.iterdir()):
        if item.is_file() and not item.name.startswith(".") and item.suffix.lower() in suffixes:
            if item.stem in found:
                raise FolderError(f"{found[item.stem]} and {item} have the same name; keep one of them.")
            found[item.stem] = item
    if not found:
        raise FolderError(f"{folder} holds no {what} (files ending in {', '.join(suffixes)}).")
    return found


def read_mask(path: Path) -> np.ndarray:
    """The stored value of each pixel of a mask file, as an (H, W) integer array."""
    try:
        with Image.open(path) as picture:
            if picture.mode not in ("L", "P", "I", "I;16", "1"):
                raise FolderError(
                    f"{path} is a {picture.mode} picture; a mask holds one integer per pixel (a grey or "
                    "palette PNG)."
                )
            labels = np.asarray(picture.convert("L") if picture.mode == "1" else picture)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise FolderError(f"{path} cannot be read as a mask ({type(error).__name__}: {error}).") from None
    if labels.size and labels.min() < 0:
        raise FolderError(f"{path} holds negative values; classes are stored as 0, 1, 2, ...")
    return labels


def _values_used(labels: np.ndarray) -> set[int]:
    """The distinct values of a mask; counting is ten times faster than np.unique on 8- and 16-bit masks."""
    if labels.dtype.itemsize <= 2:
        return set(np.flatnonzero(np.bincount(labels.ravel())).tolist())
    return set(np.unique(labels).tolist())


def read_image(path: Path) -> np.ndarray:
    """A photo as (H, W, 3) uint8 RGB, whatever its mode (grey, palette, RGBA, CMYK)."""
    try:
        with Image.open(path) as picture:
            return np.asarray(picture.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise FolderError(f"{path} cannot be read as an image ({type(error).__name__}: {error}).") from None


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file's header: the scan stays fast on thousands of photos, and a photo that is
    broken further in fails with its name when the pipeline reads it."""
    try:
        with Image.open(path) as picture:
            return picture.size[::-1]
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise FolderError(f"{path} cannot be read as an image ({type(error).__name__}: {error}).") from None


def _classes(root: Path, used: set[int]) -> tuple[config.Classes, tuple[int, ...]]:
    """The classes and their stored values, from classes.json or from the values the masks use."""
    path = root / CLASSES_FILE
    if path.exists():
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
            names = tuple(str(name) for name in spec["names"])
            values = tuple(int(value) for value in spec.get("values", range(len(names))))
            background = names.index(spec.get("background", names[0]))
        except (ValueError, KeyError, TypeError) as error:
            raise FolderError(
                f"{path} is not a usable class list ({type(error).__name__}: {error})."
            ) from None
        if len(values) != len(names) or len(set(values)) != len(values) or len(names) < 2:
            raise FolderError(f"{path} needs two or more names and one distinct value per name.")
        return config.Classes(names, background), values
    for binary in ((0, 255), (0, 1)):  # black and white masks, or 0/1 ones
        if used <= set(binary):
            return config.Classes(("background", "foreground"), 0), binary
    values = tuple(sorted(used | {0}))
    return config.Classes(tuple(f"class {value}" for value in values), 0), values


def _split(pairs: dict[str, tuple[Path, Path]], root: Path, seed: int, test_fraction: float) -> dict:
    lists = {split: root / name for split, name in SPLIT_LISTS.items()}
    present = [path for path in lists.values() if path.exists()]
    if len(present) == 1:
        raise FolderError(
            f"{present[0]} has no partner: give both {' and '.join(SPLIT_LISTS.values())}, or neither."
        )
    if present:
        splits = {}
        for split, path in lists.items():
            names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            missing = [name for name in names if name not in pairs]
            if missing:
                raise FolderError(f"{path} lists {missing[:3]} without an image and a mask of that name.")
            splits[split] = [pairs[name] for name in names]
        return splits
    names = sorted(pairs)
    order = np.random.default_rng(seed).permutation(len(names))
    count = min(len(names) - 1, max(1, round(test_fraction * len(names))))
    test = {names[index] for index in order[:count]}
    return {
        "train": [pairs[name] for name in names if name not in test],
        "test": [pairs[name] for name in names if name in test],
    }


def scan_folder(root, seed: int = 42, test_fraction: float = DEFAULT_TEST_FRACTION) -> FolderDataset:
    """Pair ``root/images`` with ``root/masks`` by name, check every pair, find the classes and split.

    Raises :class:`FolderError`, naming the file, for an empty or missing folder, an unreadable file, a
    mask whose size differs from its image's or that holds a value outside the class list.
    """
    root = Path(root)
    if not root.is_dir():
        raise FolderError(f"{root} is not a folder; point the dataset at a folder with images/ and masks/.")
    images = _files_by_stem(root / "images", IMAGE_SUFFIXES, "images")
    masks = _files_by_stem(root / "masks", MASK_SUFFIXES, "masks")
    unpaired = [f"{images[name]} has no mask" for name in sorted(set(images) - set(masks))]
    unpaired += [f"{masks[name]} has no image" for name in sorted(set(masks) - set(images))]
    pairs = {name: (images[name], masks[name]) for name in sorted(set(images) & set(masks))}
    if len(pairs) < 2:
        raise FolderError(
            f"{root} has {len(pairs)} image with a mask of the same name; it needs two or more."
        )
    used: dict[Path, set[int]] = {}
    for image, mask in pairs.values():
        labels, size = read_mask(mask), _image_size(image)
        if labels.shape != size:
            raise FolderError(
                f"{mask} is {labels.shape[1]} x {labels.shape[0]} pixels but {image} is {size[1]} x {size[0]}."
            )
        used[mask] = _values_used(labels)
    classes, values = _classes(root, set().union(*used.values()))
    if classes.num_classes > MAX_CLASSES:
        raise FolderError(
            f"{root} has {classes.num_classes} classes; the pipelines hold at most {MAX_CLASSES}."
        )
    for mask, found in used.items():
        unknown = sorted(found - set(values))
        if unknown:
            raise FolderError(
                f"{mask} holds the value(s) {unknown[:5]}, not among the class values {list(values)}."
            )
    splits = _split(pairs, root, seed, test_fraction)
    listed = {image.stem for split in splits.values() for image, _ in split}
    unpaired += [f"{pairs[name][0]} is in neither list file" for name in sorted(set(pairs) - listed)]
    return FolderDataset(root, splits, classes, values, tuple(unpaired))
