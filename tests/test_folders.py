"""Tests for folders.py: a folder of photos and label masks, paired, checked and split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_folders import make_folder

from unet_clustering import config, folders


def test_pairs_classes_and_a_seeded_split(tmp_path: Path) -> None:
    dataset = folders.scan_folder(make_folder(tmp_path / "data"), seed=1)
    assert dataset.classes == config.Classes(("class 0", "class 1", "class 2", "class 3"), background=0)
    assert dataset.values == (0, 1, 2, 3) and dataset.unpaired == ()
    assert len(dataset.splits["train"]) == 5 and len(dataset.splits["test"]) == 1
    names = sorted(image.stem for split in dataset.splits.values() for image, _ in split)
    assert names == [f"photo_{index}" for index in range(6)]
    assert all(image.stem == mask.stem for split in dataset.splits.values() for image, mask in split)
    again = folders.scan_folder(tmp_path / "data", seed=1)
    assert again.splits == dataset.splits
    other = [folders.scan_folder(tmp_path / "data", seed=seed).splits["test"] for seed in range(2, 8)]
    assert any(split != dataset.splits["test"] for split in other)


def test_binary_masks_become_background_and_foreground(tmp_path: Path) -> None:
    dataset = folders.scan_folder(make_folder(tmp_path / "data", binary=True))
    assert dataset.classes == config.Classes(("background", "foreground"), 0) and dataset.values == (0, 255)


def test_classes_json_names_the_classes_and_their_values(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", classes=3)
    (root / "classes.json").write_text(json.dumps({"names": ["sky", "road", "car"], "background": "road"}))
    dataset = folders.scan_folder(root)
    assert dataset.classes == config.Classes(("sky", "road", "car"), background=1)


def test_list_files_decide_the_split(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    (root / "train.txt").write_text("photo_0\nphoto_1\n\nphoto_2\n")
    (root / "test.txt").write_text("photo_5\n")
    dataset = folders.scan_folder(root)
    assert [image.stem for image, _ in dataset.splits["train"]] == ["photo_0", "photo_1", "photo_2"]
    assert [image.stem for image, _ in dataset.splits["test"]] == ["photo_5"]
    assert dataset.unpaired == (
        f"{root / 'images' / 'photo_3.jpg'} is in neither list file",
        f"{root / 'images' / 'photo_4.jpg'} is in neither list file",
    )
    (root / "test.txt").unlink()
    with pytest.raises(folders.FolderError, match=r"train\.txt has no partner"):
        folders.scan_folder(root)
    (root / "test.txt").write_text("photo_9\n")
    with pytest.raises(folders.FolderError, match=r"test\.txt lists \['photo_9'\]"):
        folders.scan_folder(root)


def test_unpaired_files_are_reported_by_name(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    (root / "masks" / "photo_0.png").unlink()
    Image.new("L", (53, 37)).save(root / "masks" / "stray.png")
    dataset = folders.scan_folder(root)
    assert dataset.unpaired == (
        f"{root / 'images' / 'photo_0.jpg'} has no mask",
        f"{root / 'masks' / 'stray.png'} has no image",
    )


def damage(root: Path, kind: str) -> Path:
    mask = root / "masks" / "photo_3.png"
    if kind == "size":
        Image.new("L", (20, 20)).save(mask)
    elif kind == "value":
        (root / "classes.json").write_text(json.dumps({"names": ["a", "b", "c", "d"]}))
        labels = np.zeros((37, 53), np.uint8)
        labels[0, 0] = 7
        Image.fromarray(labels).save(mask)
    elif kind == "unreadable_image":
        (root / "images" / "photo_3.jpg").write_bytes(b"not a picture")
        return root / "images" / "photo_3.jpg"
    elif kind == "unreadable_mask":
        mask.write_bytes(b"\x89PNG broken")
    elif kind == "colour_mask":
        Image.new("RGB", (53, 37)).save(mask)
    return mask


@pytest.mark.parametrize(
    ("kind", "explanation"),
    [
        ("size", "is 20 x 20 pixels but"),
        ("value", r"holds the value\(s\) \[7\]"),
        ("unreadable_image", "cannot be read as an image"),
        ("unreadable_mask", "cannot be read as a mask"),
        ("colour_mask", "is a RGB picture"),
    ],
)
def test_bad_files_are_named_with_the_reason(tmp_path: Path, kind: str, explanation: str) -> None:
    bad = damage(make_folder(tmp_path / "data"), kind)
    with pytest.raises(folders.FolderError, match=explanation) as error:
        folders.scan_folder(tmp_path / "data")
    assert str(bad) in str(error.value)


def test_empty_and_missing_folders_say_what_to_add(tmp_path: Path) -> None:
    with pytest.raises(folders.FolderError, match="is not a folder"):
        folders.scan_folder(tmp_path / "nowhere")
    (tmp_path / "data" / "images").mkdir(parents=True)
    with pytest.raises(folders.FolderError, match="holds no images"):
        folders.scan_folder(tmp_path / "data")
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "images" / "a.png")
    with pytest.raises(folders.FolderError, match="masks is missing"):
        folders.scan_folder(tmp_path / "data")
