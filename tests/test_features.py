"""features.py: stage feature maps, hypercolumns, balanced pixel sampling, and the features file.

A tiny U-Net (16 px, base_filters=3, depth 2) stands in for the trained one: enc1 has 3 channels,
enc2 6, the bottleneck 12, dec2 6 and dec1 3.

Floats computed along different paths (another batch size, another graph) are compared with a
tolerance: oneDNN picks its kernels by batch shape, so the same pixel's features may differ in the
last bits of a float32 sum between a batch of 2 and a batch of 5.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from unet_clustering import config, features, unet

SIZE = 16
CHANNELS = {"enc1": 3, "enc2": 6, "bottleneck": 12, "dec2": 6, "dec1": 3}


@pytest.fixture(autouse=True)
def artifacts_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.check_same_model names (and creates) the artifacts folder: keep it out of the checkout."""
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(tmp_path / "artifacts"))


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return unet.build_unet(image_size=SIZE, base_filters=3, depth=2)


@pytest.fixture(scope="module")
def extractor(model: keras.Model) -> keras.Model:
    return features.feature_extractor(model, features.DEFAULT_LAYERS)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).random((5, SIZE, SIZE, 3)).astype(np.float32)


def close(actual, expected) -> None:
    """Equal up to what float32 sums along different kernel paths can promise."""
    expected = np.asarray(expected)
    scale = float(np.abs(expected).max()) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6 * scale)


def striped_masks(num_images: int, rows_per_class: tuple[int, int, int]) -> np.ndarray:
    """Masks whose first rows are pet, the next background, the last border (``rows_per_class`` each)."""
    row_classes = np.repeat(np.arange(config.OXFORD_PET_CLASSES.num_classes), rows_per_class)
    assert row_classes.size == SIZE
    mask = np.repeat(row_classes[:, None], SIZE, axis=1)
    return np.repeat(mask[None], num_images, axis=0).astype(np.int32)


def per_image_class_counts(masks, image_index, pixel_index) -> np.ndarray:
    labels = masks.reshape(len(masks), -1)[image_index, pixel_index]
    return np.stack(
        [
            np.bincount(labels[image_index == image], minlength=config.OXFORD_PET_CLASSES.num_classes)
            for image in range(len(masks))
        ]
    )


# ---------------------------------------------------------------------------- the extractor


def test_default_layers_are_stages_of_the_unet(model: keras.Model) -> None:
    assert features.DEFAULT_LAYERS == ("bottleneck", "dec2", "dec1")
    assert set(features.DEFAULT_LAYERS) <= set(unet.stage_names(model))


def test_the_extractor_gives_each_layer_at_its_resolution(extractor: keras.Model, images: np.ndarray) -> None:
    maps = extractor(images, training=False)
    assert len(maps) == len(features.DEFAULT_LAYERS)
    sides = {"bottleneck": SIZE // 4, "dec2": SIZE // 2, "dec1": SIZE}
    for name, feature_map in zip(features.DEFAULT_LAYERS, maps, strict=True):
        assert tuple(feature_map.shape) == (len(images), sides[name], sides[name], CHANNELS[name]), name


def test_the_extractor_shares_the_model_weights_and_outputs(
    model: keras.Model, extractor: keras.Model
) -> None:
    assert {id(variable) for variable in extractor.weights} <= {id(variable) for variable in model.weights}
    assert extractor.count_params() < model.count_params()  # stops at dec1, before the logits
    single = keras.Model(model.input, model.get_layer("dec2").output)
    batch = np.random.default_rng(2).random((2, SIZE, SIZE, 3)).astype(np.float32)
    close(
        keras.ops.convert_to_numpy(extractor(batch, training=False)[1]),
        keras.ops.convert_to_numpy(single(batch, training=False)),
    )


def test_an_unknown_layer_is_refused(model: keras.Model) -> None:
    with pytest.raises(ValueError, match="enc9"):
        features.feature_extractor(model, ["enc9"])


# ---------------------------------------------------------------------------- hypercolumns


def test_hypercolumn_channels_are_the_layers_channels_in_order(
    model: keras.Model, images: np.ndarray
) -> None:
    layers = ("enc2", "bottleneck", "enc1")  # 6 + 12 + 3 channels, a different count for each
    extractor = features.feature_extractor(model, layers)
    columns = features.hypercolumns(extractor, images, SIZE)
    assert columns.shape == (len(images), SIZE, SIZE, sum(CHANNELS[name] for name in layers))
    assert columns.dtype == np.float32
    maps = [keras.ops.convert_to_numpy(feature_map) for feature_map in extractor(images, training=False)]
    enc2, bottleneck, enc1 = columns[..., :6], columns[..., 6:18], columns[..., 18:]
    # A map already at the size is kept as it is.
    close(enc1, maps[2])
    # Bilinear resizing: every value is a weighted mean of the map's values, so within their range.
    for block, feature_map in ((enc2, maps[0]), (bottleneck, maps[1])):
        low, high = feature_map.min(axis=(1, 2), keepdims=True), feature_map.max(axis=(1, 2), keepdims=True)
        assert (block >= low - 1e-6).all() and (block <= high + 1e-6).all()
        # ... and no cell is simply repeated (nearest-neighbour would give 2x2 or 4x4 blocks of one value).
        assert not np.allclose(block[:, 0::2], block[:, 1::2])


def test_hypercolumns_of_a_single_layer_and_at_another_size(model: keras.Model, images: np.ndarray) -> None:
    only_dec1 = features.feature_extractor(model, ["dec1"])
    columns = features.hypercolumns(only_dec1, images, SIZE)
    assert columns.shape == (len(images), SIZE, SIZE, CHANNELS["dec1"])
    expected = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer("dec1").output)(images))
    close(columns, expected)
    small = features.hypercolumns(features.feature_extractor(model, features.DEFAULT_LAYERS), images, 8)
    assert small.shape == (len(images), 8, 8, 21)


def test_hypercolumns_do_not_depend_on_the_batch(extractor: keras.Model, images: np.ndarray) -> None:
    whole = features.hypercolumns(extractor, images, SIZE)
    in_pairs = np.concatenate(
        [features.hypercolumns(extractor, images[i : i + 2], SIZE) for i in range(0, 5, 2)]
    )
    close(in_pairs, whole)  # not exactly equal: oneDNN may pick other kernels for another batch shape


# ---------------------------------------------------------------------------- sampling pixels


def test_sampling_takes_equal_counts_per_class_within_the_budget() -> None:
    masks = striped_masks(4, (5, 7, 4))  # 80 pet, 112 background, 64 border pixels per image
    image_index, pixel_index = features.sample_pixels(masks, 30, seed=0)
    np.testing.assert_array_equal(np.bincount(image_index), [30] * 4)
    np.testing.assert_array_equal(per_image_class_counts(masks, image_index, pixel_index), [[10, 10, 10]] * 4)
    # Pixels of one image are distinct, inside the image, and listed image after image.
    assert (np.diff(image_index) >= 0).all()
    assert pixel_index.min() >= 0 and pixel_index.max() < SIZE * SIZE
    for image in range(4):
        chosen = pixel_index[image_index == image]
        assert len(np.unique(chosen)) == len(chosen)


def test_a_budget_not_divisible_by_the_classes_is_used_whole() -> None:
    masks = striped_masks(1, (5, 7, 4))
    image_index, pixel_index = features.sample_pixels(masks, 31, seed=0)
    assert len(image_index) == 31
    assert sorted(per_image_class_counts(masks, image_index, pixel_index)[0]) == [10, 10, 11]


def test_a_small_class_leaves_its_share_to_the_others() -> None:
    masks = striped_masks(3, (9, 7, 0))
    masks[:, 0, :4] = config.BORDER  # 4 border pixels per image
    image_index, pixel_index = features.sample_pixels(masks, 30, seed=0)
    # border gives all 4 it has; the 26 left are shared by pet and background.
    np.testing.assert_array_equal(per_image_class_counts(masks, image_index, pixel_index), [[13, 13, 4]] * 3)


def test_an_image_with_one_class_gives_it_the_whole_budget() -> None:
    masks = np.full((2, SIZE, SIZE), config.BACKGROUND, dtype=np.int32)
    image_index, pixel_index = features.sample_pixels(masks, 40, seed=0)
    np.testing.assert_array_equal(per_image_class_counts(masks, image_index, pixel_index), [[0, 40, 0]] * 2)


def test_a_budget_larger_than_the_image_takes_every_pixel() -> None:
    masks = striped_masks(2, (5, 7, 4))
    image_index, pixel_index = features.sample_pixels(masks, 10_000, seed=0)
    assert len(pixel_index) == 2 * SIZE * SIZE
    for image in range(2):
        np.testing.assert_array_equal(np.sort(pixel_index[image_index == image]), np.arange(SIZE * SIZE))


def test_masks_with_a_channel_axis_and_of_uint8_are_sampled_alike() -> None:
    masks = striped_masks(2, (5, 7, 4))
    plain = features.sample_pixels(masks, 30, seed=3)
    shaped = features.sample_pixels(masks[..., None].astype(np.uint8), 30, seed=3)
    for left, right in zip(plain, shaped, strict=True):
        np.testing.assert_array_equal(left, right)


def test_sampling_is_reproducible_by_seed() -> None:
    masks = striped_masks(3, (5, 7, 4))
    first, again, other = (features.sample_pixels(masks, 30, seed=seed) for seed in (5, 5, 6))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


# ---------------------------------------------------------------------------- pixel features


def test_pixel_features_are_the_hypercolumns_of_the_sampled_pixels(
    extractor: keras.Model, images: np.ndarray
) -> None:
    masks = striped_masks(len(images), (5, 7, 4))
    image_index, pixel_index = features.sample_pixels(masks, 12, seed=0)
    columns = features.hypercolumns(extractor, images, SIZE)
    expected = columns.reshape(len(images), SIZE * SIZE, -1)[image_index, pixel_index]
    # pixel_index is row * width + column.
    first = 7
    row, column = divmod(int(pixel_index[first]), SIZE)
    np.testing.assert_array_equal(expected[first], columns[image_index[first], row, column])
    for batch_size in (1, 2, 16):
        rows = features.pixel_features(extractor, images, image_index, pixel_index, batch_size=batch_size)
        assert rows.shape == (len(pixel_index), 21) and rows.dtype == np.float32
        close(rows, expected)


# ---------------------------------------------------------------------------- the features file


@pytest.fixture()
def model_files(tmp_path: Path) -> tuple[Path, Path]:
    model_path, other = tmp_path / "unet.keras", tmp_path / "retrained.keras"
    model_path.write_bytes(b"the trained model")
    other.write_bytes(b"a model trained again")
    return model_path, other


def saved_features(tmp_path: Path, model_path: Path, metadata: dict | None = None) -> tuple[Path, dict]:
    rng = np.random.default_rng(0)
    arrays = {
        "features": rng.normal(size=(7, 21)).astype(np.float32),
        "labels": rng.integers(0, 3, 7),
        "image_index": np.arange(7),
        "pixel_index": rng.integers(0, SIZE * SIZE, 7),
    }
    if metadata is None:
        metadata = {
            "layers": list(features.DEFAULT_LAYERS),
            "seed": 42,
            "model_sha256": config.file_sha256(model_path),
        }
    path = features.save_features(tmp_path / "out" / "features.npz", arrays, metadata)
    return path, arrays


def test_saved_features_load_back_unchanged(tmp_path: Path, model_files) -> None:
    model_path, _ = model_files
    path, arrays = saved_features(tmp_path, model_path)
    assert path == tmp_path / "out" / "features.npz"
    assert [entry.name for entry in path.parent.iterdir()] == ["features.npz"]  # no temporary left
    loaded, metadata = features.load_features(path, model_path)
    assert set(loaded) == set(arrays)
    for key, values in arrays.items():
        # Exact: the file stores the very bytes of each array.
        np.testing.assert_array_equal(loaded[key], values)
        assert loaded[key].dtype == values.dtype
    assert metadata == {
        "layers": list(features.DEFAULT_LAYERS),
        "seed": 42,
        "model_sha256": config.file_sha256(model_path),
    }


def test_features_of_another_model_are_refused(tmp_path: Path, model_files) -> None:
    model_path, other = model_files
    path, _ = saved_features(tmp_path, model_path)
    with pytest.raises(config.StaleArtifactError, match=r"notebooks/04_feature_extraction\.ipynb again"):
        features.load_features(path, other)


def test_features_without_a_model_fingerprint_are_refused(tmp_path: Path, model_files) -> None:
    model_path, _ = model_files
    path, _ = saved_features(tmp_path, model_path, metadata={"layers": ["dec1"]})
    with pytest.raises(config.StaleArtifactError):
        features.load_features(path, model_path)


def test_the_refusal_names_the_file_that_was_loaded(tmp_path: Path, model_files) -> None:
    model_path, other = model_files
    path, _ = saved_features(tmp_path, model_path)
    with pytest.raises(config.StaleArtifactError, match=str(path)):
        features.load_features(path, other)
