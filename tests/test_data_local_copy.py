"""data.py on small local copies with one thing changed or wrong each: what the real builder serves
must match the files on disk, and what cannot be used must be named."""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_pets import encode, make_small_folder, paint_example, write_archives

from unet_clustering import data


@pytest.fixture
def prepared_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where ``prepare_local_copy`` puts preparations named by the copy's fingerprint."""
    root = tmp_path / "prepared"
    monkeypatch.setenv(data.PREPARED_ENV, str(root))
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_small_folder(tmp_path / "pets")


def served(source: data.DataSource, split: str = "train") -> dict[str, dict]:
    """Every example the prepared split serves, by file name."""
    (examples,), _, _ = data.load([split], local_dir=source.local_path, data_dir=source.data_dir)
    return {example["file_name"].decode(): example for example in examples.as_numpy_iterator()}


def change_in_place(path: Path, old: bytes, new: bytes) -> None:
    """Replace bytes by as many others, keeping the file's size and modification time."""
    assert len(old) == len(new)
    before = path.stat()
    payload = path.read_bytes()
    assert old in payload
    path.write_bytes(payload.replace(old, new, 1))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size


# --------------------------------------------------------------------------------------------
# Any change to a file the preparation reads gives a new preparation
# --------------------------------------------------------------------------------------------


def test_a_changed_trimap_is_prepared_anew(folder: Path, prepared_root: Path) -> None:
    first = data.prepare_local_copy(folder)
    trimap_path = folder / "annotations" / "trimaps" / "Abyssinian_1.png"
    trimap = np.asarray(Image.open(trimap_path))
    swapped = np.choose(trimap - 1, [2, 1, 3]).astype(np.uint8)  # pet and background trade places
    trimap_path.write_bytes(encode(swapped, "PNG"))
    second = data.prepare_local_copy(folder)
    assert second.data_dir != first.data_dir
    np.testing.assert_array_equal(served(second)["Abyssinian_1.jpg"]["segmentation_mask"][..., 0], swapped)


def test_an_image_damaged_in_place_is_prepared_anew(folder: Path, prepared_root: Path) -> None:
    first = data.prepare_local_copy(folder)
    image_path = folder / "images" / "Abyssinian_2.jpg"
    payload = image_path.read_bytes()
    middle = len(payload) // 2
    change_in_place(image_path, payload[middle : middle + 64], bytes(64))
    second = data.prepare_local_copy(folder)
    assert second.data_dir != first.data_dir


def test_a_changed_head_box_is_prepared_anew(folder: Path, prepared_root: Path) -> None:
    first = data.prepare_local_copy(folder)
    change_in_place(folder / "annotations" / "xmls" / "Abyssinian_1.xml", b"<xmin>10<", b"<xmin>20<")
    second = data.prepare_local_copy(folder)
    assert second.data_dir != first.data_dir
    box = served(second)["Abyssinian_1.jpg"]["head_bbox"]  # (ymin, xmin, ymax, xmax), relative
    assert box[1] == pytest.approx(20 / 48)


def test_changed_archive_contents_are_prepared_anew(
    folder: Path, tmp_path: Path, prepared_root: Path
) -> None:
    archives = write_archives(folder, tmp_path / "archives")
    first = data.prepare_local_copy(archives)
    assert first.kind == "local-archives"
    # Same size, same modification time, different head box.
    change_in_place(archives / "annotations.tar.gz", b"<xmin>10<", b"<xmin>20<")
    second = data.prepare_local_copy(archives)
    assert second.data_dir != first.data_dir
    assert served(second)["Abyssinian_1.jpg"]["head_bbox"][1] == pytest.approx(20 / 48)


def test_an_unchanged_copy_reuses_its_preparation(folder: Path, prepared_root: Path) -> None:
    first = data.prepare_local_copy(folder)
    again = data.prepare_local_copy(folder)
    assert again.data_dir == first.data_dir and again.prepare_s == 0.0


# --------------------------------------------------------------------------------------------
# 16-bit trimaps and images
# --------------------------------------------------------------------------------------------


def test_16_bit_trimaps_and_images_are_served_with_their_values(folder: Path, prepared_root: Path) -> None:
    _, trimap = paint_example(0)  # Abyssinian_1's trimap, values 1-3
    (folder / "annotations" / "trimaps" / "Abyssinian_1.png").write_bytes(
        encode(trimap.astype(np.uint16), "PNG")
    )
    # A 16-bit grey ramp over the whole range, saved as PNG under a .jpg name.
    ramp = np.linspace(0, 65535, 40 * 48).reshape(40, 48).astype(np.uint16)
    (folder / "images" / "Abyssinian_2.jpg").write_bytes(encode(ramp, "PNG"))
    assert Image.open(io.BytesIO(encode(ramp, "PNG"))).mode == "I;16"

    source = data.prepare_local_copy(folder)
    examples = served(source)
    np.testing.assert_array_equal(examples["Abyssinian_1.jpg"]["segmentation_mask"][..., 0], trimap)
    image = examples["Abyssinian_2.jpg"]["image"].astype(np.float64)
    expected = np.repeat((ramp / 257.0)[..., None], 3, axis=-1)
    assert np.abs(image - expected).mean() < 2.0 and np.abs(image - expected).max() < 16
    assert {item["name"] for item in source.report["reencoded"]} == {"Abyssinian_1", "Abyssinian_2"}


# --------------------------------------------------------------------------------------------
# Split files: overlap, empty, duplicates, byte-order mark
# --------------------------------------------------------------------------------------------


def append_line(folder: Path, file_name: str, line: str) -> None:
    split_file = folder / "annotations" / file_name
    split_file.write_text(split_file.read_text() + line + "\n")


def test_names_in_both_splits_stay_in_the_test_split_only(folder: Path, prepared_root: Path) -> None:
    append_line(folder, "trainval.txt", "Bengal_1 6 1 6")
    source = data.prepare_local_copy(folder)
    assert source.report["in_both_splits"] == ["Bengal_1"]
    assert set(served(source, "train")) == {"Abyssinian_1.jpg", "Abyssinian_2.jpg"}
    assert set(served(source, "test")) == {"Bengal_1.jpg"}
    assert source.report["prepared_splits"] == {"train": 2, "test": 1}
    summary = data.report_summary(source.report)
    assert "both" in summary and "Bengal_1" in summary


@pytest.mark.parametrize("file_name", ["trainval.txt", "test.txt"])
@pytest.mark.parametrize(
    "content",
    ["", "\n# nothing listed\n\n", "Abyssinian_64 1 1 1\nnot a valid line\n"],
    ids=["empty", "comments-only", "all-skipped"],
)
def test_a_split_file_without_usable_examples_is_named(
    folder: Path, prepared_root: Path, file_name: str, content: str
) -> None:
    (folder / "annotations" / file_name).write_text(content)
    with pytest.raises(data.LocalSourceError, match=re.escape(file_name)):
        data.prepare_local_copy(folder)
    # The builder never ran.
    assert not list(prepared_root.glob(f"*/{data.DATASET_NAME}"))


def test_a_duplicated_split_line_is_kept_once_and_reported(folder: Path, prepared_root: Path) -> None:
    append_line(folder, "trainval.txt", "Abyssinian_1 1 1 1")
    source = data.prepare_local_copy(folder)
    assert source.report["duplicates"] == [{"split": "train", "name": "Abyssinian_1"}]
    assert set(served(source, "train")) == {"Abyssinian_1.jpg", "Abyssinian_2.jpg"}
    summary = data.report_summary(source.report)
    assert "duplicate" in summary and "Abyssinian_1" in summary


def test_a_byte_order_mark_is_not_part_of_the_first_name(folder: Path, prepared_root: Path) -> None:
    split_file = folder / "annotations" / "trainval.txt"
    split_file.write_bytes(b"\xef\xbb\xbf" + split_file.read_bytes())
    source = data.prepare_local_copy(folder)
    assert source.report["skipped"] == []
    assert set(served(source, "train")) == {"Abyssinian_1.jpg", "Abyssinian_2.jpg"}


# --------------------------------------------------------------------------------------------
# Damaged archives
# --------------------------------------------------------------------------------------------


def damaged(archive: Path, damage: str) -> bytes:
    payload = archive.read_bytes()
    if damage == "cut-in-data":  # as an interrupted download: inside the last member's data
        with tarfile.open(archive) as tar:
            last = [member for member in tar.getmembers() if member.isfile()][-1]
        return payload[: last.offset_data + last.size // 2]
    return {
        "garbage": b"this is not a tar archive\n" * 200,
        "half": payload[: len(payload) // 2],
        "empty": b"",
    }[damage]


@pytest.mark.parametrize("archive", ["images.tar.gz", "annotations.tar.gz"])
@pytest.mark.parametrize("damage", ["garbage", "cut-in-data", "half", "empty"])
def test_a_damaged_archive_is_named(
    folder: Path, tmp_path: Path, prepared_root: Path, archive: str, damage: str
) -> None:
    archives = write_archives(folder, tmp_path / "archives")
    target = archives / archive
    target.write_bytes(damaged(target, damage))
    with pytest.raises(data.LocalSourceError, match=re.escape(str(target))):
        data.prepare_local_copy(archives)


# --------------------------------------------------------------------------------------------
# Upper-case and .jpeg file names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".JPG", ".jpeg", ".JPEG"])
def test_images_with_other_jpeg_suffixes_are_found(folder: Path, prepared_root: Path, suffix: str) -> None:
    original = folder / "images" / "Abyssinian_2.jpg"
    original.rename(original.with_suffix(suffix))
    source = data.prepare_local_copy(folder)
    assert source.report["skipped"] == []
    assert set(served(source, "train")) == {"Abyssinian_1.jpg", "Abyssinian_2.jpg"}


def test_archives_go_through_the_same_checks_as_a_folder(
    folder: Path, tmp_path: Path, prepared_root: Path
) -> None:
    append_line(folder, "trainval.txt", "Abyssinian_1 1 1 1")
    _, trimap = paint_example(0)
    (folder / "annotations" / "trimaps" / "Abyssinian_1.png").write_bytes(
        encode(trimap.astype(np.uint16), "PNG")
    )
    source = data.prepare_local_copy(write_archives(folder, tmp_path / "archives"))
    assert source.kind == "local-archives"
    assert source.report["duplicates"] == [{"split": "train", "name": "Abyssinian_1"}]
    assert source.report["reencoded"] == [{"name": "Abyssinian_1", "file": "trimap", "from": "PNG I;16"}]
    np.testing.assert_array_equal(served(source)["Abyssinian_1.jpg"]["segmentation_mask"][..., 0], trimap)
