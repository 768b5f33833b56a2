"""Tests for predict.py: reading users' photos, segmenting them, saving the pictures, the CLI.

A tiny untrained U-Net (32 px, depth 2) saved to a temporary folder stands in for the trained
model, so no training is needed; its predictions are arbitrary but have the real shapes and types.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from PIL import Image

from unet_clustering import config, predict, training, unet, visualization

MODEL_SIZE = 32
ERROR = "unet-clustering-predict: error:"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "unet.keras"
    keras.utils.set_random_seed(0)  # the same untrained weights in every run
    unet.build_unet(image_size=MODEL_SIZE, base_filters=4, depth=2).save(path)
    return path


@pytest.fixture(scope="module")
def model(model_path: Path):
    return training.load_trained_model(model_path)


@pytest.fixture(autouse=True)
def empty_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test sees an empty artifacts folder, never the checkout's own artifacts."""
    folder = tmp_path / "artifacts"
    folder.mkdir()
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(folder))
    return folder


@pytest.fixture
def saved_model(model_path: Path, empty_artifacts: Path) -> Path:
    """The tiny model, saved where notebook 03 saves the trained one."""
    return Path(shutil.copy(model_path, empty_artifacts / "unet.keras"))


def painted_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour photo (gradients and a disc) that survives JPEG compression well."""
    rows, columns = np.mgrid[0:height, 0:width]
    photo = np.zeros((height, width, 3), dtype=np.uint8)
    photo[..., 0] = (255 * rows / max(1, height - 1)).astype(np.uint8)
    photo[..., 1] = (255 * columns / max(1, width - 1)).astype(np.uint8)
    random = np.random.default_rng(seed)
    centre_row, centre_column = random.uniform(0.3, 0.7) * height, random.uniform(0.3, 0.7) * width
    disc = (rows - centre_row) ** 2 + (columns - centre_column) ** 2 < (min(height, width) / 3) ** 2
    photo[..., 2] = np.where(disc, 220, 30)
    return photo


def write_photo(path: Path, photo: np.ndarray, image_format: str, mode: str | None = None, **options) -> Path:
    picture = Image.fromarray(photo)
    if mode:
        picture = picture.convert(mode)
    picture.save(path, format=image_format, **options)
    return path


def nearest_rows_columns(height: int, width: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Model-size row and column that each photo row and column copies under nearest neighbour."""
    return (np.arange(height) * size) // height, (np.arange(width) * size) // width


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(ERROR)]


# --------------------------------------------------------------------------------------------
# segment_image
# --------------------------------------------------------------------------------------------


def test_segment_image_returns_maps_at_the_photo_size(tmp_path: Path, saved_model: Path) -> None:
    path = write_photo(tmp_path / "odd.jpg", painted_photo(45, 70), "JPEG")
    result = predict.segment_image(path, num_clusters=4)  # model=None loads the saved model

    assert result.size == (45, 70)
    assert result.mask.shape == (45, 70) and result.mask.dtype == np.uint8
    assert result.clusters.shape == (45, 70) and result.clusters.dtype == np.int32
    assert result.overlay.shape == (45, 70, 3) and result.overlay.dtype == np.uint8
    assert set(np.unique(result.mask)) <= {0, 1, 2}
    # Enlarging 32 x 32 to 45 x 70 keeps every model pixel, so all four clusters are visible.
    assert set(np.unique(result.clusters)) == {0, 1, 2, 3}
    assert result.num_clusters == 4

    assert result.probabilities.shape == (MODEL_SIZE, MODEL_SIZE, config.OXFORD_PET_CLASSES.num_classes)
    assert result.probabilities.dtype == np.float32
    np.testing.assert_allclose(result.probabilities.sum(axis=-1), 1.0, atol=1e-5)
    # The mask is the model-size argmax, each photo pixel copying its nearest model pixel.
    rows, columns = nearest_rows_columns(45, 70, MODEL_SIZE)
    small_mask = np.argmax(result.probabilities, axis=-1)
    np.testing.assert_array_equal(result.mask, small_mask[rows][:, columns])


def test_probabilities_are_those_of_the_exported_prediction(model) -> None:
    photo = painted_photo(MODEL_SIZE, MODEL_SIZE)  # already at model size: no resizing
    result = predict.segment_image(photo, model=model, num_clusters=2, flip=True)
    expected = predict.predict_probabilities(model, (photo / 255.0)[None], flip=True)[0]
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)


def test_clusters_are_numbered_by_size_and_repeatable(model) -> None:
    photo = painted_photo(64, 96, seed=3)
    result = predict.segment_image(photo, model=model, num_clusters=3, flip=False)
    # Recover the model-size map from the first photo pixel copying each model pixel.
    rows, columns = nearest_rows_columns(64, 96, MODEL_SIZE)
    first_row = np.searchsorted(rows, np.arange(MODEL_SIZE))
    first_column = np.searchsorted(columns, np.arange(MODEL_SIZE))
    small_clusters = result.clusters[first_row][:, first_column]
    counts = np.bincount(small_clusters.ravel(), minlength=3)
    assert list(counts) == sorted(counts, reverse=True)

    again = predict.segment_image(photo, model=model, num_clusters=3, flip=False)
    np.testing.assert_array_equal(again.clusters, result.clusters)


def test_float_array_and_flip(model) -> None:
    photo = painted_photo(40, 40)
    from_uint8 = predict.segment_image(photo, model=model, num_clusters=2, flip=True)
    from_float = predict.segment_image(photo / 255.0, model=model, num_clusters=2, flip=True)
    np.testing.assert_array_equal(from_float.mask, from_uint8.mask)
    plain = predict.segment_image(photo, model=model, num_clusters=2, flip=False)
    # The flip average of an untrained model differs from the plain prediction.
    assert not np.allclose(plain.probabilities, from_uint8.probabilities)


def write_clustering_record(artifacts: Path, chosen_k: object, model_file: Path) -> Path:
    record = {"chosen_k": chosen_k, "model_sha256": hashlib.sha256(model_file.read_bytes()).hexdigest()}
    return config.write_json(artifacts / "clustering_metrics.json", record)


def test_the_number_of_clusters_comes_from_the_clustering_artifact(
    model, saved_model: Path, empty_artifacts: Path
) -> None:
    photo = painted_photo(40, 50)
    k, reason = predict.chosen_num_clusters(saved_model)
    assert k == predict.DEFAULT_NUM_CLUSTERS == 3 and "does not exist" in reason
    assert predict.segment_image(photo, model=model).num_clusters == 3

    write_clustering_record(empty_artifacts, 5, saved_model)
    k, reason = predict.chosen_num_clusters(saved_model)
    assert k == 5 and "made with this model" in reason
    result = predict.segment_image(photo, model=model)
    assert result.num_clusters == 5
    assert set(np.unique(result.clusters)) == set(range(5))
    k, reason = predict.chosen_num_clusters(empty_artifacts / "absent.keras")
    assert k == 3 and "absent.keras does not exist" in reason

    write_clustering_record(empty_artifacts, "many", saved_model)
    k, reason = predict.chosen_num_clusters(saved_model)
    assert k == 3 and "cannot be used" in reason and "chosen_k" in reason
    (empty_artifacts / "clustering_metrics.json").write_text("{ not json")
    k, reason = predict.chosen_num_clusters(saved_model)
    assert k == 3 and "cannot be used" in reason


def test_the_k_of_another_model_is_not_used(
    tmp_path: Path, saved_model: Path, empty_artifacts: Path, capsys: pytest.CaptureFixture
) -> None:
    other_model = tmp_path / "other.keras"
    other_model.write_bytes(b"the weights of a model trained before this one")
    write_clustering_record(empty_artifacts, 5, other_model)

    photo = write_photo(tmp_path / "cat.png", painted_photo(40, 50), "PNG")
    assert predict.main([str(photo), "--out", str(tmp_path / "out")]) == 0
    clusters = read_rgb(tmp_path / "out" / "cat_clusters.png")
    assert len(np.unique(clusters.reshape(-1, 3), axis=0)) == 3
    first_line = capsys.readouterr().out.splitlines()[0]
    assert "k=3" in first_line and "another model" in first_line

    k, reason = predict.chosen_num_clusters(saved_model)
    assert k == 3 and "another model" in reason


@pytest.mark.parametrize("bad_k", [0, -2, 2.5, True, MODEL_SIZE * MODEL_SIZE + 1])
def test_invalid_number_of_clusters(model, bad_k) -> None:
    with pytest.raises(ValueError, match="num_clusters"):
        predict.segment_image(painted_photo(40, 40), model=model, num_clusters=bad_k)


def test_missing_model_names_the_training_notebook(tmp_path: Path) -> None:
    path = write_photo(tmp_path / "cat.png", painted_photo(40, 40), "PNG")
    with pytest.raises(config.MissingArtifactError, match="03_training.ipynb"):
        predict.segment_image(path)


def test_a_large_photo_comes_back_at_full_size(tmp_path: Path, model) -> None:
    # 12 megapixels: many bands of BAND_PIXELS, and outlines 4 pixels thick.
    height, width = 3000, 4000
    path = write_photo(tmp_path / "large.jpg", painted_photo(height, width), "JPEG", quality=90)
    result = predict.segment_image(path, model=model, num_clusters=3, flip=False)
    assert result.mask.shape == result.clusters.shape == (height, width)
    assert result.overlay.shape == (height, width, 3)
    rows, columns = nearest_rows_columns(height, width, MODEL_SIZE)
    np.testing.assert_array_equal(result.mask, np.argmax(result.probabilities, axis=-1)[rows][:, columns])

    written = predict.save_outputs(result, tmp_path / "out", "large")
    for path in written.values():
        with Image.open(path) as picture:
            assert picture.size == (width, height)


# --------------------------------------------------------------------------------------------
# The full-size overlay, painted band by band
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("thickness", [1, 2, 5])
def test_banded_overlay_equals_the_whole_image_overlay(monkeypatch: pytest.MonkeyPatch, thickness) -> None:
    random = np.random.default_rng(thickness)
    height, width = 97, 61
    blocks = random.integers(0, 3, (7, 5)).astype(np.uint8)
    mask = cv2.resize(blocks, (width, height), interpolation=cv2.INTER_NEAREST)
    cv2.line(mask, (0, 5), (width - 1, 90), 2, 1)  # a thin diagonal region crossing every band
    photo = random.integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = visualization.overlay(photo, mask, contour_thickness=thickness)
    for rows_per_band in (1, 3, 10, 40):
        monkeypatch.setattr(predict, "BAND_PIXELS", rows_per_band * width)
        np.testing.assert_array_equal(predict._overlay_full_size(photo, mask, thickness), expected)


def test_outline_thickness_grows_with_the_photo() -> None:
    assert predict.outline_thickness(45, 70) == 1
    assert predict.outline_thickness(3000, 4000) == 4
    assert predict.outline_thickness(8000, 6000) == 8


# --------------------------------------------------------------------------------------------
# load_photo: formats and broken files
# --------------------------------------------------------------------------------------------


def test_png_named_jpg_is_read_exactly(tmp_path: Path) -> None:
    photo = painted_photo(30, 40)
    loaded = predict.load_photo(write_photo(tmp_path / "really_png.jpg", photo, "PNG"))
    np.testing.assert_array_equal(loaded, photo)
    assert loaded.flags.writeable


def test_grayscale_rgba_and_16_bit_png(tmp_path: Path) -> None:
    photo = painted_photo(30, 40)
    grey = photo[..., 1]
    loaded = predict.load_photo(write_photo(tmp_path / "grey.png", grey, "PNG"))
    np.testing.assert_array_equal(loaded, np.repeat(grey[..., None], 3, axis=-1))

    rgba = np.concatenate([photo, np.full((30, 40, 1), 7, np.uint8)], axis=-1)
    loaded = predict.load_photo(write_photo(tmp_path / "rgba.png", rgba, "PNG"))
    np.testing.assert_array_equal(loaded, photo)

    # 16-bit values v * 257 are exactly the 8-bit values v.
    wide = grey.astype(np.uint16) * 257
    loaded = predict.load_photo(write_photo(tmp_path / "sixteen.png", wide, "PNG"))
    np.testing.assert_array_equal(loaded, np.repeat(grey[..., None], 3, axis=-1))


@pytest.mark.parametrize(
    ("values", "scale"),
    [(np.float32(1.0), 255.0), (np.int32(1), 1.0), (np.int32(257), 1 / 257)],
    ids=["float in [0, 1]", "32-bit ints within 8 bits", "32-bit ints within 16 bits"],
)
def test_wide_grey_pictures_are_scaled_by_the_range_they_use(tmp_path: Path, values, scale) -> None:
    grey = painted_photo(30, 40)[..., 1]
    stored = (
        (grey / 255.0).astype(np.float32) if values.dtype == np.float32 else grey.astype(np.int32) * values
    )
    path = tmp_path / "wide.tif"
    Image.fromarray(stored).save(path, format="TIFF")
    loaded = predict.load_photo(path)
    expected = np.round(stored.astype(np.float64) * scale)
    np.testing.assert_allclose(loaded[..., 0], expected, atol=1)
    np.testing.assert_array_equal(loaded[..., 0], loaded[..., 2])


def test_a_palette_with_a_transparent_colour(tmp_path: Path) -> None:
    picture = Image.fromarray(painted_photo(30, 40)).convert("P")
    path = tmp_path / "palette.png"
    picture.save(path, format="PNG", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow warns when such a palette is converted straight to RGB
        loaded = predict.load_photo(path)
    np.testing.assert_array_equal(loaded, np.asarray(picture.convert("RGBA"))[..., :3])


@pytest.mark.parametrize(("image_format", "mode"), [("JPEG", None), ("JPEG", "L"), ("JPEG", "CMYK")])
def test_jpeg_colour_modes_stay_close_and_segment(tmp_path: Path, model, image_format, mode) -> None:
    photo = painted_photo(45, 70)
    path = write_photo(tmp_path / "photo.jpg", photo, image_format, mode)
    loaded = predict.load_photo(path)
    assert loaded.shape == (45, 70, 3) and loaded.dtype == np.uint8
    if mode == "L":
        grey = np.asarray(Image.fromarray(photo).convert("L"))
        photo = np.repeat(grey[..., None], 3, axis=-1)
    assert np.abs(loaded.astype(int) - photo).mean() < 6  # JPEG is lossy
    result = predict.segment_image(path, model=model, num_clusters=2, flip=False)
    assert result.mask.shape == (45, 70)


def test_gif_gives_its_first_frame(tmp_path: Path, model) -> None:
    first = Image.fromarray(painted_photo(45, 70)).convert("P")
    second = Image.fromarray(255 - painted_photo(45, 70)).convert("P")
    path = tmp_path / "animated.jpg"
    first.save(path, format="GIF", save_all=True, append_images=[second])
    # A palette picture is stored without loss, so the first frame comes back exactly.
    np.testing.assert_array_equal(predict.load_photo(path), np.asarray(first.convert("RGB")))
    result = predict.segment_image(path, model=model, num_clusters=2, flip=False)
    assert result.overlay.shape == (45, 70, 3)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    photo = painted_photo(30, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = write_photo(tmp_path / "rotated.png", photo, "PNG", exif=exif)
    np.testing.assert_array_equal(predict.load_photo(path), np.rot90(photo, k=-1))


def test_max_side_shrinks_while_keeping_the_aspect_ratio(tmp_path: Path) -> None:
    path = write_photo(tmp_path / "big.jpg", painted_photo(300, 400), "JPEG")
    assert predict.load_photo(path, max_side=100).shape == (75, 100, 3)
    assert predict.load_photo(path, max_side=1000).shape == (300, 400, 3)
    with pytest.raises(ValueError, match="max_side"):
        predict.load_photo(path, max_side=0)


def broken_file(kind: str, folder: Path) -> Path:
    path = folder / f"broken_{kind}.jpg"
    if kind == "text":
        path.write_text("this is a shopping list, not a photo\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        buffer = io.BytesIO()
        Image.fromarray(painted_photo(200, 200)).save(buffer, format="JPEG")
        path.write_bytes(buffer.getvalue()[:2000])
    elif kind == "heic":
        path = folder / "IMG_0001.HEIC"
        path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    ("kind", "explanation"),
    [
        ("text", "cannot be read as an image; convert it to JPEG or PNG"),
        ("empty", "empty"),
        ("truncated", "truncated"),
        ("missing", "does not exist"),
        ("heic", "HEIC"),
        ("folder", "is a folder"),
    ],
)
def test_broken_files_raise_photo_error_naming_the_file(tmp_path: Path, kind, explanation) -> None:
    path = broken_file(kind, tmp_path)
    with pytest.raises(predict.PhotoError, match=explanation) as caught:
        predict.load_photo(path)
    assert path.name in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_photos_above_the_pixel_limit_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_photo(tmp_path / "huge.png", painted_photo(45, 70), "PNG")
    limit_before = Image.MAX_IMAGE_PIXELS
    # 45 x 70 = 3150 pixels: above a limit of 3000, and more than twice a limit of 1000 (where
    # Pillow's own guard would refuse the file before its size can be read).
    for limit in (3000, 1000):
        monkeypatch.setattr(predict, "MAX_PHOTO_PIXELS", limit)
        with pytest.raises(predict.PhotoError, match="megapixel limit") as caught:
            predict.load_photo(path)
        assert "huge.png" in str(caught.value)
    assert Image.MAX_IMAGE_PIXELS == limit_before
    monkeypatch.setattr(predict, "MAX_PHOTO_PIXELS", 3150)
    assert predict.load_photo(path).shape == (45, 70, 3)
    assert Image.MAX_IMAGE_PIXELS == limit_before


# --------------------------------------------------------------------------------------------
# save_outputs
# --------------------------------------------------------------------------------------------


def block_result() -> predict.SegmentationResult:
    blocks = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    mask = cv2.resize(blocks, (70, 45), interpolation=cv2.INTER_NEAREST)
    clusters = cv2.resize(blocks.astype(np.int32) + 3, (70, 45), interpolation=cv2.INTER_NEAREST)
    probabilities = np.full((MODEL_SIZE, MODEL_SIZE, 3), 1 / 3, dtype=np.float32)
    return predict.SegmentationResult(mask, clusters, painted_photo(45, 70), probabilities, num_clusters=6)


def test_save_outputs_writes_the_four_pictures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(predict, "BAND_PIXELS", 7 * 70)  # the colour pictures are painted in bands
    result = block_result()
    written = predict.save_outputs(result, tmp_path / "out", "cat")
    assert {name: path.name for name, path in written.items()} == {
        "mask": "cat_mask.png",
        "clusters": "cat_clusters.png",
        "overlay": "cat_overlay.jpg",
        "mask_labels": "cat_mask_labels.png",
    }
    painted = read_rgb(written["mask"])
    assert painted.shape == (45, 70, 3)
    # Rows 0 and 23, columns 0, 24 and 48 lie in the six blocks: one colour per block.
    blocks = result.mask[::23, ::24]
    np.testing.assert_array_equal(
        painted[::23, ::24], visualization.class_colors(config.OXFORD_PET_CLASSES)[blocks]
    )
    np.testing.assert_array_equal(painted, visualization.colorize_mask(result.mask))
    clusters = read_rgb(written["clusters"])
    np.testing.assert_array_equal(clusters, visualization.CLUSTER_COLORS[result.clusters])
    with Image.open(written["mask_labels"]) as labels:
        assert labels.mode == "L"
        np.testing.assert_array_equal(np.asarray(labels), result.mask)
    decoded = read_rgb(written["overlay"])
    # JPEG is lossy, but a smooth picture comes back close, and far from its red-blue swap.
    assert np.abs(decoded.astype(int) - result.overlay).mean() < 6
    assert np.abs(decoded.astype(int) - result.overlay[..., ::-1]).mean() > 40
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes leave no temporary files


def test_save_outputs_never_replaces_earlier_outputs_unless_asked(tmp_path: Path) -> None:
    result, out = block_result(), tmp_path / "out"
    first = predict.save_outputs(result, out, "cat")
    first_bytes = {name: path.read_bytes() for name, path in first.items()}
    second = predict.save_outputs(result, out, "cat")
    assert [path.name for path in second.values()] == [
        "cat_2_mask.png",
        "cat_2_clusters.png",
        "cat_2_overlay.jpg",
        "cat_2_mask_labels.png",
    ]
    # Any one earlier file is enough to move all four to the next free number.
    (out / "dog_overlay.jpg").write_bytes(b"someone else's picture")
    assert predict.save_outputs(result, out, "dog")["mask"].name == "dog_2_mask.png"
    assert (out / "dog_overlay.jpg").read_bytes() == b"someone else's picture"
    assert predict.save_outputs(result, out, "cat")["overlay"].name == "cat_3_overlay.jpg"
    assert {name: path.read_bytes() for name, path in first.items()} == first_bytes

    other = dataclasses.replace(result, mask=2 - result.mask)
    replaced = predict.save_outputs(other, out, "cat", overwrite=True)
    assert replaced == first
    assert replaced["mask_labels"].read_bytes() != first_bytes["mask_labels"]


@pytest.mark.parametrize("bad_stem", ["", "a/b", "..", "a\\b"])
def test_save_outputs_refuses_stems_with_folders(tmp_path: Path, bad_stem) -> None:
    with pytest.raises(ValueError, match="stem"):
        predict.save_outputs(block_result(), tmp_path, bad_stem)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def test_main_numbers_repeated_names_and_reports_bad_photos(
    tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    first = write_photo(tmp_path / "a" / "cat.jpg", painted_photo(40, 50), "JPEG")
    second = write_photo(tmp_path / "b" / "cat.png", painted_photo(50, 40), "PNG")
    broken = broken_file("text", tmp_path)
    out = tmp_path / "out"
    code = predict.main([str(first), str(broken), str(second), "--out", str(out), "--model", str(model_path)])
    assert code == 2
    captured = capsys.readouterr()
    k_line, *photo_lines = captured.out.splitlines()
    assert "k=3" in k_line and len(photo_lines) == 2
    assert "cat_2_overlay.jpg" in photo_lines[1]
    [line] = error_lines(captured.err)
    assert broken.name in line and "Traceback" not in captured.err
    assert (out / "cat_overlay.jpg").is_file() and (out / "cat_2_overlay.jpg").is_file()
    with Image.open(out / "cat_2_mask.png") as picture:
        assert picture.size == (40, 50)


def test_main_returns_zero_when_every_photo_works(
    tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture
) -> None:
    photo = write_photo(tmp_path / "cat.jpg", painted_photo(40, 50), "JPEG")
    arguments = [str(photo), "--out", str(tmp_path / "out"), "--model", str(model_path), "--clusters", "2"]
    assert predict.main(arguments) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "k=2" in captured.out and "--clusters" in captured.out
    with Image.open(tmp_path / "out" / "cat_mask_labels.png") as picture:
        assert picture.size == (50, 40)


@pytest.mark.parametrize("bad_k", ["0", "two", "-1"])
def test_main_rejects_a_bad_cluster_count(tmp_path: Path, bad_k) -> None:
    with pytest.raises(SystemExit) as caught:
        predict.main(["photo.jpg", "--out", str(tmp_path), "--clusters", bad_k])
    assert caught.value.code == 2


def test_a_second_run_keeps_the_outputs_of_the_first(
    tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    first = write_photo(tmp_path / "dup.jpg", painted_photo(40, 50), "JPEG")
    second = write_photo(tmp_path / "dup.png", painted_photo(50, 40), "PNG")
    assert predict.main([str(first), "--out", str(out), "--model", str(model_path)]) == 0
    capsys.readouterr()
    assert predict.main([str(second), "--out", str(out), "--model", str(model_path)]) == 0
    photo_line = capsys.readouterr().out.splitlines()[-1]
    # The second photo's pictures are numbered, the line names them and says why.
    assert "dup_2_overlay.jpg" in photo_line and "kept" in photo_line
    with Image.open(out / "dup_mask.png") as picture:
        assert picture.size == (50, 40)
    with Image.open(out / "dup_2_mask.png") as picture:
        assert picture.size == (40, 50)
    assert len(list(out.iterdir())) == 8


@pytest.mark.parametrize(
    "where",
    [
        "a file",
        "under a file",
        pytest.param(
            "a read-only folder",
            marks=pytest.mark.skipif(
                os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere"
            ),
        ),
    ],
)
def test_a_bad_out_folder_is_reported_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, where: str
) -> None:
    photo = write_photo(tmp_path / "cat.png", painted_photo(40, 40), "PNG")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o500)
    out = {"a file": notes, "under a file": notes / "out", "a read-only folder": read_only / "out"}[where]

    def no_model_yet(*args, **kwargs):
        pytest.fail("the model was loaded before --out was checked")

    monkeypatch.setattr(training, "load_trained_model", no_model_yet)
    code = predict.main([str(photo), "--out", str(out), "--model", str(tmp_path / "missing.keras")])
    assert code == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(ERROR) and "--out" in line and str(out) in line
    assert "03_training" not in line and captured.out == ""
    assert notes.read_text() == "not a folder"


def unreadable_model_error(folder: Path, model_path: Path, damage: str, capsys: pytest.CaptureFixture) -> str:
    """The CLI's stderr for a model file that is truncated, or not a model at all."""
    broken = folder / "unet.keras"
    if damage == "truncated":
        payload = model_path.read_bytes()
        broken.write_bytes(payload[: len(payload) // 2])
    else:
        broken.write_text("a shopping list saved with the wrong name\n")
    photo = write_photo(folder / "cat.png", painted_photo(40, 40), "PNG")
    assert predict.main([str(photo), "--out", str(folder / "out"), "--model", str(broken)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    return captured.err


@pytest.mark.parametrize("damage", ["truncated", "not a model"])
def test_an_unreadable_model_file_says_so(
    tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture, damage: str
) -> None:
    [line] = unreadable_model_error(tmp_path, model_path, damage, capsys).splitlines()
    assert line.startswith(ERROR) and "not a readable Keras model" in line and "03_training.ipynb" in line


@pytest.mark.parametrize("damage", ["truncated", "not a model"])
def test_an_unreadable_model_file_is_not_called_missing(
    tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture, damage: str
) -> None:
    assert "File not found" not in unreadable_model_error(tmp_path, model_path, damage, capsys)


def run_cli(arguments: list[str], artifacts: Path, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, config.ARTIFACTS_ENV: str(artifacts), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "unet_clustering.predict", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=120,
    )


def test_cli_writes_pictures_and_reports_a_non_image(
    tmp_path: Path, model_path: Path, empty_artifacts: Path
) -> None:
    good = write_photo(tmp_path / "dog.jpg", painted_photo(45, 70), "JPEG")
    text = broken_file("text", tmp_path)
    out = tmp_path / "out"
    arguments = [str(good), str(text), "--out", str(out), "--model", str(model_path), "--clusters", "3"]
    finished = run_cli([*arguments, "--no-flip"], empty_artifacts, tmp_path)

    names = ["dog_mask.png", "dog_clusters.png", "dog_overlay.jpg", "dog_mask_labels.png"]
    assert sorted(path.name for path in out.iterdir()) == sorted(names)
    k_line, photo_line = finished.stdout.splitlines()
    assert "k=3" in k_line and all(name in photo_line for name in names)
    # The good photo is done; the text file is reported in one line, without a traceback.
    assert finished.returncode == 2
    assert "Traceback" not in finished.stderr
    [line] = error_lines(finished.stderr)
    assert text.name in line and "convert it to JPEG or PNG" in line


def test_main_without_a_model_names_the_training_notebook(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good = write_photo(tmp_path / "dog.jpg", painted_photo(45, 70), "JPEG")
    assert predict.main([str(good), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(ERROR) and "03_training.ipynb" in line
    assert captured.out == "" and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# Videos and folders of frames
# --------------------------------------------------------------------------------------------

VIDEO_FPS = 12.0


def moving_frames(count: int = 12, height: int = 40, width: int = 56) -> list[np.ndarray]:
    """``count`` RGB frames of a disc that moves from frame to frame."""
    return [painted_photo(height, width, seed=number) for number in range(count)]


def write_video(path: Path, frames: list[np.ndarray], fourcc: str = "mp4v") -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), VIDEO_FPS, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} videos here"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    """The RGB frames of a video and its frame rate, as OpenCV decodes them."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} cannot be opened"
    frames, fps = [], capture.get(cv2.CAP_PROP_FPS)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames, fps


def expected_overlay(model, frame: np.ndarray, flip: bool = True) -> np.ndarray:
    mask = predict.segment_frame(model, frame, flip=flip)
    return visualization.overlay(frame, mask, contour_thickness=predict.outline_thickness(*mask.shape))


def assert_is_overlay(
    decoded: np.ndarray, overlays: list[np.ndarray], number: int, source: np.ndarray
) -> None:
    """``decoded`` is ``overlays[number]`` up to lossy compression (which blurring mostly evens out):
    closer to it than to any other overlay, its red-blue swap or the ``source`` frame."""
    blurred = [cv2.GaussianBlur(picture, (5, 5), 0) for picture in (decoded, *overlays)]
    differences = [mean_difference(blurred[0], overlay) for overlay in blurred[1:]]
    assert np.argmin(differences) == number and differences[number] < 5, (number, differences)
    assert mean_difference(decoded, overlays[number][..., ::-1]) > 40
    assert mean_difference(decoded, source) > 40


def mean_difference(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.abs(first.astype(int) - second.astype(int)).mean())


def write_frame_folder(folder: Path, count: int = 3) -> Path:
    folder.mkdir()
    for number, frame in enumerate(moving_frames(count, 36, 50)):
        write_photo(folder / f"frame_{number:03d}.png", frame, "PNG")
    return folder


def test_segment_frame_gives_the_class_mask_at_the_frame_size(model) -> None:
    frame = painted_photo(45, 70)
    mask = predict.segment_frame(model, frame)
    assert mask.shape == (45, 70) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1, 2}
    # The argmax of the model-size prediction without the mirror image, copied by nearest neighbour.
    small = cv2.resize(frame, (MODEL_SIZE, MODEL_SIZE), interpolation=cv2.INTER_AREA) / np.float32(255)
    probabilities = predict.predict_probabilities(model, small[None], flip=False)[0]
    rows, columns = nearest_rows_columns(45, 70, MODEL_SIZE)
    np.testing.assert_array_equal(mask, probabilities.argmax(-1)[rows][:, columns])
    # A float frame in [0, 1] gives the same mask; flipping changes the untrained model's answer.
    np.testing.assert_array_equal(predict.segment_frame(model, frame / 255.0), mask)
    flipped = predict.segment_frame(model, painted_photo(64, 96, seed=3), flip=True)
    assert not np.array_equal(flipped, predict.segment_frame(model, painted_photo(64, 96, seed=3)))


@pytest.mark.parametrize("size", [(20, 24), (45, 70)])  # enlarged, then shrunk to the model's size
def test_segment_image_masks_photos_as_segment_frame_does(tmp_path: Path, model, size) -> None:
    path = write_photo(tmp_path / "cat.png", painted_photo(*size, seed=5), "PNG")
    result = predict.segment_image(path, model=model, num_clusters=2)  # flip is on by default
    np.testing.assert_array_equal(
        result.mask, predict.segment_frame(model, predict.load_photo(path), flip=True)
    )
    np.testing.assert_array_equal(result.overlay, expected_overlay(model, predict.load_photo(path)))


def test_videos_are_recognised_by_their_extension() -> None:
    for name in ("clip.mp4", "CLIP.MOV", "a.b.Mkv", "x.webm", "x.avi", "x.m4v", "x.mpg", "x.MPEG"):
        assert predict.is_video(name), name
    for name in ("cat.jpg", "mp4", "clip.mp4.png", "notes.txt", "folder"):
        assert not predict.is_video(name), name


@pytest.mark.parametrize(("reported", "used"), [(30.0, 30.0), (23.976, 23.976), (0.0, 25.0), (np.nan, 25.0)])
def test_an_unknown_frame_rate_falls_back_to_25(reported, used) -> None:
    assert predict._frames_per_second(reported) == pytest.approx(used)
    assert predict.DEFAULT_FPS == 25.0


def test_frames_per_second_of_a_result() -> None:
    result = predict.VideoResult(Path("clip.mp4"), Path("out/clip_segmented.mp4"), frames=48, seconds=2.0)
    assert result.frames_per_second == 24.0 and result.skipped == []


@pytest.mark.parametrize(("name", "fourcc"), [("clip.mp4", "mp4v"), ("Clip.AVI", "MJPG")])
def test_main_segments_a_video_frame_by_frame(
    tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture, model, name: str, fourcc: str
) -> None:
    video = write_video(tmp_path / name, moving_frames(), fourcc)
    out = tmp_path / "out"
    assert predict.main([str(video), "--out", str(out), "--model", str(model_path)]) == 0

    segmented = out / f"{video.stem}_segmented.mp4"
    assert [path.name for path in out.iterdir()] == [segmented.name]
    inputs, _ = read_video(video)
    outputs, fps = read_video(segmented)
    assert len(outputs) == len(inputs) == 12 and fps == pytest.approx(VIDEO_FPS)
    assert all(frame.shape == (40, 56, 3) for frame in outputs)
    # Every frame is the overlay of its own input frame, up to MPEG-4 compression.
    overlays = [expected_overlay(model, frame) for frame in inputs]
    for number, decoded in enumerate(outputs):
        assert_is_overlay(decoded, overlays, number, inputs[number])

    captured = capsys.readouterr()
    [line] = captured.out.splitlines()  # no k line: videos are not clustered
    assert line.startswith(f"{video} -> {segmented} (12 frames, ") and line.endswith(" frames/s)")
    assert float(line.split(", ")[-1].removesuffix(" frames/s)")) > 0
    assert "frame" in captured.err and not error_lines(captured.err)  # the progress bar


def test_the_flip_setting_applies_to_frames(
    tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    video = write_video(tmp_path / "clip.mp4", moving_frames(3))
    folder = write_frame_folder(tmp_path / "frames", 2)
    flips = []
    segment_frame = predict.segment_frame

    def recording_segment_frame(model, frame, flip=False):
        flips.append(flip)
        return segment_frame(model, frame, flip=flip)

    monkeypatch.setattr(predict, "segment_frame", recording_segment_frame)
    arguments = [str(video), str(folder), "--out", str(tmp_path / "out"), "--model", str(model_path)]
    assert predict.main(arguments) == 0
    assert flips == [True] * 5
    flips.clear()
    assert predict.main([*arguments, "--no-flip"]) == 0
    assert flips == [False] * 5
    assert "Clustering" not in capsys.readouterr().out


def test_main_segments_a_folder_of_frames(
    tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture, model
) -> None:
    folder = write_frame_folder(tmp_path / "holiday")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # hidden files are not frames
    (folder / "nested").mkdir()
    out = tmp_path / "out"
    assert predict.main([str(folder), "--out", str(out), "--model", str(model_path)]) == 0

    segmented = out / "holiday_segmented"
    names = ["frame_000_overlay.jpg", "frame_001_overlay.jpg", "frame_002_overlay.jpg"]
    assert sorted(path.name for path in segmented.iterdir()) == names
    frames = [predict.load_photo(folder / f"frame_{number:03d}.png") for number in range(3)]
    overlays = [expected_overlay(model, frame) for frame in frames]
    for number, name in enumerate(names):
        decoded = read_rgb(segmented / name)  # a JPEG of the frame's overlay
        assert decoded.shape == (36, 50, 3)
        assert_is_overlay(decoded, overlays, number, frames[number])
    captured = capsys.readouterr()
    [line] = captured.out.splitlines()  # no k line: frames are not clustered
    assert line.startswith(f"{folder} -> {segmented} (3 frames, ") and not error_lines(captured.err)


def test_a_second_run_numbers_videos_and_folders(
    tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture
) -> None:
    video = write_video(tmp_path / "clip.mp4", moving_frames(4))
    folder = write_frame_folder(tmp_path / "frames", 2)
    out = tmp_path / "out"
    arguments = [str(video), str(folder), "--out", str(out), "--model", str(model_path)]
    assert predict.main(arguments) == 0
    first_video = (out / "clip_segmented.mp4").read_bytes()
    first_frame = (out / "frames_segmented" / "frame_000_overlay.jpg").read_bytes()
    capsys.readouterr()

    assert predict.main([*arguments, "--no-flip"]) == 0
    video_line, folder_line = capsys.readouterr().out.splitlines()
    assert str(out / "clip_segmented_2.mp4") in video_line and "(4 frames, " in video_line
    assert str(out / "frames_segmented_2") in folder_line and "(2 frames, " in folder_line
    assert sorted(path.name for path in out.iterdir()) == [
        "clip_segmented.mp4",
        "clip_segmented_2.mp4",
        "frames_segmented",
        "frames_segmented_2",
    ]
    assert (out / "clip_segmented.mp4").read_bytes() == first_video
    assert (out / "frames_segmented" / "frame_000_overlay.jpg").read_bytes() == first_frame
    assert len(read_video(out / "clip_segmented_2.mp4")[0]) == 4
    assert len(list((out / "frames_segmented_2").iterdir())) == 2


def test_bad_videos_and_folders_are_reported_and_the_others_go_on(
    tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_text("this is a shopping list, not a video\n")
    empty_video = tmp_path / "empty.mov"
    empty_video.write_bytes(b"")
    empty_folder = tmp_path / "no_frames"
    empty_folder.mkdir()
    good_video = write_video(tmp_path / "clip.mp4", moving_frames(3))
    photo = write_photo(tmp_path / "cat.png", painted_photo(40, 50), "PNG")
    out = tmp_path / "out"
    inputs = [broken, good_video, empty_folder, photo, empty_video, tmp_path / "missing.mkv"]
    code = predict.main([*map(str, inputs), "--out", str(out), "--model", str(model_path)])

    assert code == 2
    captured = capsys.readouterr()
    k_line, video_line, photo_line = captured.out.splitlines()
    assert "k=3" in k_line and "(3 frames, " in video_line and "cat_overlay.jpg" in photo_line
    broken_line, folder_line, empty_line, missing_line = error_lines(captured.err)
    assert "broken.mp4 cannot be read as a video" in broken_line
    assert "no_frames is a folder without frames" in folder_line
    assert "empty.mov is empty" in empty_line and "missing.mkv does not exist" in missing_line
    assert "Traceback" not in captured.err
    assert sorted(path.name for path in out.iterdir()) == sorted(
        ["clip_segmented.mp4", *(f"cat{suffix}" for suffix in predict._SUFFIXES.values())]
    )


def test_files_of_a_folder_that_are_not_images_are_reported_and_skipped(
    tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = write_frame_folder(tmp_path / "frames", 2)
    (folder / "notes.txt").write_text("frames shot on Tuesday\n")
    only_text = tmp_path / "only_text"
    only_text.mkdir()
    (only_text / "readme.txt").write_text("no frames here\n")
    out = tmp_path / "out"
    code = predict.main([str(folder), str(only_text), "--out", str(out), "--model", str(model_path)])

    assert code == 2
    captured = capsys.readouterr()
    [line] = captured.out.splitlines()
    assert "(2 frames, " in line
    notes_line, only_text_line = error_lines(captured.err)
    assert "notes.txt cannot be read as an image" in notes_line
    assert "only_text is a folder without frames: none of its 1 files" in only_text_line
    assert sorted(path.name for path in (out / "frames_segmented").iterdir()) == [
        "frame_000_overlay.jpg",
        "frame_001_overlay.jpg",
    ]
    assert not (out / "only_text_segmented").exists()


def test_cli_segments_a_video_and_a_folder_with_progress_bars(
    tmp_path: Path, model_path: Path, empty_artifacts: Path
) -> None:
    video = write_video(tmp_path / "clip.mp4", moving_frames(6))
    folder = write_frame_folder(tmp_path / "frames", 2)
    out = tmp_path / "out"
    finished = run_cli(
        [str(video), str(folder), "--out", str(out), "--model", str(model_path)], empty_artifacts, tmp_path
    )

    assert finished.returncode == 0, finished.stderr
    video_line, folder_line = finished.stdout.splitlines()
    assert video_line.startswith(f"{video} -> {out / 'clip_segmented.mp4'} (6 frames, ")
    assert folder_line.startswith(f"{folder} -> {out / 'frames_segmented'} (2 frames, ")
    # tqdm's bars, one per input, end at their totals.
    assert "clip.mp4: 100%" in finished.stderr and "6/6" in finished.stderr
    assert "frames: 100%" in finished.stderr and "2/2" in finished.stderr
    assert "Traceback" not in finished.stderr and not error_lines(finished.stderr)
    assert len(read_video(out / "clip_segmented.mp4")[0]) == 6


def test_help_names_videos_and_folders(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        predict.main(["--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "INPUT [INPUT ...]" in text and ".mp4" in text and "folders of frames" in text
    assert "k-means for photos" in text


@pytest.mark.parametrize("kind", ["video", "folder"])
def test_the_model_warms_up_before_the_clock_starts(
    tmp_path: Path, model, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The first prediction traces the model's graph (seconds); timing it would understate the frame rate."""
    events: list[str] = []
    warm_up, clock = predict._warm_up, predict.time.perf_counter

    def recording_warm_up(*arguments):
        events.append("warm-up")
        return warm_up(*arguments)

    def recording_clock():
        events.append("clock")
        return clock()

    monkeypatch.setattr(predict, "_warm_up", recording_warm_up)
    monkeypatch.setattr(predict.time, "perf_counter", recording_clock)
    if kind == "video":
        source = write_video(tmp_path / "clip.mp4", moving_frames(2))
        result = predict.segment_video(model, source, tmp_path / "out", flip=False)
    else:
        source = write_frame_folder(tmp_path / "frames", 2)
        result = predict.segment_frame_folder(model, source, tmp_path / "out", flip=False)
    assert result.frames == 2 and events[0] == "warm-up" and events.count("clock") == 2
