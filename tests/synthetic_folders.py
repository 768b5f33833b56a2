"""Folders of photos and label masks in the layout of ``unet_clustering.folders``, made for the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

#: Class names of the four-class folder; the background is not class 0, so nothing may assume it is.
FOUR_CLASSES = ("sky", "road", "car", "person")
FOUR_CLASSES_BACKGROUND = "road"


def make_folder(
    root: Path,
    count: int = 6,
    classes: int = 4,
    size: tuple[int, int] = (37, 53),
    binary: bool = False,
) -> Path:
    """``count`` photos of one odd size and masks of vertical bands of ``classes`` classes (or 0/255)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    random = np.random.default_rng(0)
    for index in range(count):
        photo = random.integers(0, 255, (*size, 3), dtype=np.uint8)
        labels = np.arange(size[1])[None, :].repeat(size[0], 0) * classes // size[1]
        labels = (labels > 0) * 255 if binary else labels
        Image.fromarray(photo).save(root / "images" / f"photo_{index}.jpg")
        Image.fromarray(labels.astype(np.uint8)).save(root / "masks" / f"photo_{index}.png")
    return root


def make_scene_folder(root: Path, count: int = 30, seed: int = 0) -> Path:
    """Learnable scenes of :data:`FOUR_CLASSES` in photos of odd, varied sizes, with a ``classes.json``.

    Each class has its own colour and texture; a car (a rectangle) and a person (a disc) lie on a road
    under a sky, at random places. Masks store the classes as 0, 1, 2, 3 in palette PNGs, as many
    annotation tools write them.
    """
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    random = np.random.default_rng(seed)
    colours = np.array([(120, 170, 235), (90, 90, 90), (200, 30, 30), (240, 200, 150)], np.float64)
    for index in range(count):
        height, width = int(random.integers(41, 90)) | 1, int(random.integers(41, 90)) | 1
        rows, columns = np.mgrid[0:height, 0:width]
        labels = np.where(rows < height * random.uniform(0.3, 0.5), 0, 1)
        top, left = int(random.integers(height // 2, height - 8)), int(random.integers(0, width - 12))
        labels[top : top + 8, left : left + 12] = 2
        centre_row, centre_column = random.integers(height // 2, height), random.integers(0, width)
        labels[(rows - centre_row) ** 2 + (columns - centre_column) ** 2 < 30] = 3
        photo = colours[labels] + random.normal(0, 12, (height, width, 3))
        Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(
            root / "images" / f"scene_{index:02d}.jpg"
        )
        mask = Image.fromarray(labels.astype(np.uint8), mode="P")
        mask.putpalette([value for colour in colours.astype(int) for value in colour])
        mask.save(root / "masks" / f"scene_{index:02d}.png")
    spec = {"names": list(FOUR_CLASSES), "background": FOUR_CLASSES_BACKGROUND}
    (root / "classes.json").write_text(json.dumps(spec))
    return root
