"""A tiny synthetic copy of Oxford-IIIT Pet in the official layout, for tests.

The fixture never reads ../shared: it paints its own photos and trimaps, and adds the kinds of
broken files the real dataset (and users' own copies) contain.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

#: Good examples: name -> (class id, species id, breed id), as in the official list files.
GOOD_TRAIN = {f"Abyssinian_{index}": (1, 1, 1) for index in range(1, 5)} | {
    f"american_bulldog_{index}": (2, 2, 1) for index in range(1, 4)
}
GOOD_TEST = {f"Bengal_{index}": (6, 1, 6) for index in range(1, 4)}


def paint_example(seed: int, width: int = 48, height: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """An RGB photo and its trimap: an ellipse "pet" (1) with a border ring (3) on background (2)."""
    random = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:height, 0:width]
    centre_row, centre_column = height / 2 + random.integers(-4, 5), width / 2 + random.integers(-4, 5)
    radius = ((rows - centre_row) / (height / 3)) ** 2 + ((columns - centre_column) / (width / 3)) ** 2
    trimap = np.full((height, width), 2, np.uint8)
    trimap[radius < 1.3] = 3
    trimap[radius < 1.0] = 1
    image = random.integers(0, 60, (height, width, 3)).astype(np.uint8)
    image[trimap == 1] += np.array([150, 90, 30], np.uint8)
    return image, trimap


def encode(array: np.ndarray, image_format: str, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    picture = Image.fromarray(array)
    if mode:
        picture = picture.convert(mode)
    picture.save(buffer, format=image_format)
    return buffer.getvalue()


def write_split(
    path: Path, entries: dict[str, tuple[int, int, int]], extra_lines: tuple[str, ...] = ()
) -> None:
    lines = [f"{name} {class_id} {species} {breed}" for name, (class_id, species, breed) in entries.items()]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n")


#: Broken or unusual train examples and what the loader must do with each.
BAD_TRAIN = {
    "Abyssinian_50": "rgba-png",  # really an RGBA PNG named .jpg (like Abyssinian_5): re-encoded
    "Abyssinian_51": "gif",  # really a GIF named .jpg (like Abyssinian_34): re-encoded
    "Abyssinian_52": "grayscale",  # re-encoded to RGB
    "Abyssinian_53": "cmyk",  # re-encoded to RGB
    "Abyssinian_60": "empty",  # skipped
    "Abyssinian_61": "truncated",  # skipped
    "Abyssinian_62": "bad-trimap-values",  # skipped
    "Abyssinian_63": "trimap-size",  # skipped
    "Abyssinian_64": "missing",  # listed, not on disk: skipped
    "Abyssinian_65": "missing-trimap",  # skipped
}
REENCODED = {"Abyssinian_50", "Abyssinian_51", "Abyssinian_52", "Abyssinian_53"}
SKIPPED = {name for name, kind in BAD_TRAIN.items() if name not in REENCODED}


def file_bytes(kind: str, image: np.ndarray) -> bytes | None:
    """What lands on disk as ``<name>.jpg`` for each kind of example (``None``: no file)."""
    if kind == "missing":
        return None
    if kind == "empty":
        return b""
    if kind == "truncated":
        return encode(image, "JPEG")[:200]
    image_format, mode = {
        "rgba-png": ("PNG", "RGBA"),
        "gif": ("GIF", "P"),
        "grayscale": ("JPEG", "L"),
        "cmyk": ("JPEG", "CMYK"),
    }.get(kind, ("JPEG", None))
    return encode(image, image_format, mode)


def make_pets_folder(root: Path) -> Path:
    images, trimaps = root / "images", root / "annotations" / "trimaps"
    images.mkdir(parents=True)
    trimaps.mkdir(parents=True)
    (root / "annotations" / "xmls").mkdir()
    everything = {**GOOD_TRAIN, **GOOD_TEST}
    for seed, name in enumerate([*everything, *BAD_TRAIN, "Abyssinian_99"]):
        image, trimap = paint_example(seed)
        kind = BAD_TRAIN.get(name, "good")
        payload = file_bytes(kind, image)
        if payload is not None:
            (images / f"{name}.jpg").write_bytes(payload)
        if kind == "bad-trimap-values":
            trimap = trimap.copy()
            trimap[0, 0] = 7
        if kind == "trimap-size":
            trimap = trimap[:-4]
        if kind not in ("missing-trimap",):
            (trimaps / f"{name}.png").write_bytes(encode(trimap, "PNG"))
    bad_entries = {name: (1, 1, 1) for name in BAD_TRAIN}
    write_split(root / "annotations" / "trainval.txt", {**GOOD_TRAIN, **bad_entries}, ("not a valid line",))
    write_split(root / "annotations" / "test.txt", GOOD_TEST)
    write_split(root / "annotations" / "list.txt", {**everything, **bad_entries})
    return root


#: Official (class id, species, breed id) of the breeds the small folders use.
BREED_IDS = {"Abyssinian": (1, 1, 1), "american_bulldog": (2, 2, 1), "Bengal": (6, 1, 6)}

HEAD_BOX_XML = (
    "<annotation><size><width>48</width><height>40</height><depth>3</depth></size>"
    "<object><name>pet</name><bndbox><xmin>10</xmin><ymin>8</ymin><xmax>30</xmax><ymax>28</ymax>"
    "</bndbox></object></annotation>"
)


def make_small_folder(
    root: Path,
    train: tuple[str, ...] = ("Abyssinian_1", "Abyssinian_2"),
    test: tuple[str, ...] = ("Bengal_1",),
) -> Path:
    """A few good examples in the official layout, each with a head-box XML; tests then alter one file.

    The example at position ``i`` of ``[*train, *test]`` is ``paint_example(i)``.
    """
    images, trimaps, xmls = root / "images", root / "annotations" / "trimaps", root / "annotations" / "xmls"
    for folder in (images, trimaps, xmls):
        folder.mkdir(parents=True)
    for seed, name in enumerate([*train, *test]):
        image, trimap = paint_example(seed)
        (images / f"{name}.jpg").write_bytes(encode(image, "JPEG"))
        (trimaps / f"{name}.png").write_bytes(encode(trimap, "PNG"))
        (xmls / f"{name}.xml").write_text(HEAD_BOX_XML)
    for names, file_name in ((train, "trainval.txt"), (test, "test.txt")):
        write_split(
            root / "annotations" / file_name, {name: BREED_IDS[name.rsplit("_", 1)[0]] for name in names}
        )
    return root


def write_archives(folder: Path, destination: Path) -> Path:
    """Pack a folder in the official layout as the two official archives (uncompressed tars, as theirs)."""
    destination.mkdir(parents=True, exist_ok=True)
    for name, top in (("images.tar.gz", "images"), ("annotations.tar.gz", "annotations")):
        with tarfile.open(destination / name, "w") as archive:
            archive.add(folder / top, arcname=top)
    return destination
