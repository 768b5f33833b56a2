"""The numpy data path (``arrays``): the same augmentation as ``data.augment_pair``, without TensorFlow.

TensorFlow is imported here only as the reference that the numpy and OpenCV code must match.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from unet_clustering import arrays, config

SIDE = 48


def _smooth_image(random: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """A float image in [0, 1] with structure at several scales (random noise alone hides shifts)."""
    coarse = random.random((1, side // 6, side // 6, 3)).astype(np.float32)
    image = tf.image.resize(coarse, (side, side), method="bicubic").numpy()[0]
    return np.clip(image + 0.05 * random.random((side, side, 3)).astype(np.float32), 0.0, 1.0)


def _blocky_mask(side: int = SIDE) -> np.ndarray:
    mask = np.ones((side, side, 1), np.int32)  # background
    mask[side // 5 : 4 * side // 5, side // 4 : 3 * side // 4] = 2  # border
    mask[side // 4 : 3 * side // 4, side // 3 : 2 * side // 3] = 0  # pet
    mask[:, 3] = 0  # a one-pixel line: off by one anywhere and it moves
    return mask


def _tensorflow_geometry(image, mask, transform: arrays.Transform):
    """``data.augment_pair``'s zoom, crop and flip, spelled out with fixed draws."""
    size = (transform.scaled_size, transform.scaled_size)
    scaled_image = tf.image.resize(image, size).numpy()
    scaled_mask = tf.image.resize(mask, size, method="nearest").numpy()
    row, column = transform.offset
    image_out = scaled_image[row : row + SIDE, column : column + SIDE]
    mask_out = scaled_mask[row : row + SIDE, column : column + SIDE]
    if transform.flip:
        image_out, mask_out = image_out[:, ::-1], mask_out[:, ::-1]
    return image_out, mask_out


def test_zoom_crop_and_flip_match_tensorflow_pixel_for_pixel():
    random = np.random.default_rng(0)
    image, mask = _smooth_image(random), _blocky_mask()
    options = config.AugmentOptions(max_scale=1.6)
    transforms = [arrays.draw_transform(random, SIDE, options) for _ in range(40)]
    # Include the extremes: no zoom, and the largest zoom cropped at its far corner, mirrored.
    largest = math.ceil(SIDE * 1.6)
    transforms += [
        arrays.Transform(SIDE, (0, 0), False),
        arrays.Transform(largest, (largest - SIDE, largest - SIDE), True),
    ]
    assert {t.flip for t in transforms} == {True, False}
    for transform in transforms:
        ours_image, ours_mask = arrays.transform_pair(image, mask, transform)
        reference_image, reference_mask = _tensorflow_geometry(image, mask, transform)
        assert ours_image.shape == (SIDE, SIDE, 3) and ours_mask.shape == (SIDE, SIDE, 1)
        np.testing.assert_allclose(ours_image, reference_image, atol=1e-4, err_msg=str(transform))
        np.testing.assert_array_equal(ours_mask, reference_mask, err_msg=str(transform))
    unchanged_image, unchanged_mask = arrays.transform_pair(
        image, mask, arrays.Transform(SIDE, (0, 0), False)
    )
    np.testing.assert_allclose(unchanged_image, image, atol=1e-6)
    np.testing.assert_array_equal(unchanged_mask, mask)


def test_colour_jitter_matches_tensorflow_adjustments():
    random = np.random.default_rng(1)
    images = np.stack([_smooth_image(random) for _ in range(6)])
    images[0, :4, :4] = 0.5  # grey: saturation leaves it alone
    images[1, :4, :4] = 0.0  # black
    images[2, :4, :4] = [1.0, 0.0, 0.0]  # fully saturated: a factor above 1 cannot raise it
    # Strong factors push values outside [0, 1] before the final clip, as in training.
    brightness = random.uniform(-0.3, 0.3, 6)
    contrast = random.uniform(0.5, 1.5, 6)
    saturation = np.array([0.5, 1.5, 1.8, 0.0, 1.0, 1.3])
    ours = arrays.jitter_colours(images, brightness, contrast, saturation)
    for index in range(len(images)):
        reference = tf.image.adjust_brightness(images[index], brightness[index])
        reference = tf.image.adjust_contrast(reference, contrast[index])
        reference = tf.image.adjust_saturation(reference, saturation[index])
        reference = tf.clip_by_value(reference, 0.0, 1.0).numpy()
        np.testing.assert_allclose(ours[index], reference, atol=1e-5, err_msg=f"image {index}")
    assert ours.dtype == np.float32 and ours.min() >= 0.0 and ours.max() <= 1.0
    # The inputs are not modified in place.
    assert not np.shares_memory(ours, images)


def test_draws_follow_the_options():
    random = np.random.default_rng(2)
    options = config.AugmentOptions()
    draws = [arrays.draw_transform(random, SIDE, options) for _ in range(400)]
    largest = math.ceil(SIDE * options.max_scale)
    assert all(SIDE <= t.scaled_size <= largest for t in draws)
    assert all(0 <= offset <= t.scaled_size - SIDE for t in draws for offset in t.offset)
    assert 0.4 < np.mean([t.flip for t in draws]) < 0.6
    assert all(-options.brightness <= t.brightness <= options.brightness for t in draws)
    assert all(options.contrast[0] <= t.contrast <= options.contrast[1] for t in draws)
    assert all(options.saturation[0] <= t.saturation <= options.saturation[1] for t in draws)
    # The zooms spread over the whole range, not a few values (ceil makes an exact 1 all but impossible).
    assert {t.scaled_size for t in draws} == set(range(SIDE + 1, largest + 1))
    plain = config.AugmentOptions(flip=False, color_jitter=False)
    for transform in (arrays.draw_transform(random, SIDE, plain) for _ in range(50)):
        assert transform.flip is False and transform.brightness is None and transform.saturation is None


def test_augmented_labels_stay_on_their_pixels():
    # Each class gets its own pure colour, so the image says which label every pixel should have.
    mask = np.stack([_blocky_mask()] * 8)
    images = np.eye(3, dtype=np.float32)[mask[..., 0]]
    options = config.AugmentOptions(max_scale=1.6, color_jitter=False)
    out_images, out_masks = arrays.augment_batch(images, mask, np.random.default_rng(3), options)
    assert out_images.shape == images.shape and out_masks.shape == mask.shape
    assert out_masks.dtype == mask.dtype and set(np.unique(out_masks)) <= {0, 1, 2}
    # Bilinear sampling blends colours only where two classes meet; elsewhere colour and label agree.
    agreement = (out_images.argmax(axis=-1) == out_masks[..., 0]).mean()
    assert agreement > 0.97
    assert not np.array_equal(out_masks, mask)  # something did move


def _numbered(count: int, side: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Image ``n`` is filled with ``n / 100``, so each batch row can be traced back to its index."""
    images = np.broadcast_to(
        (np.arange(count, dtype=np.float32) / 100)[:, None, None, None], (count, side, side, 3)
    ).copy()
    masks = np.broadcast_to(
        np.arange(count, dtype=np.int32)[:, None, None, None], (count, side, side, 1)
    ).copy()
    return images, masks


def test_batches_shuffle_each_epoch_and_validation_stays_in_order():
    images, masks = _numbered(10)
    batches = arrays.Batches(images, masks, batch_size=4, training=True, seed=0)
    assert len(batches) == 3  # 4 + 4 + 2 images
    orders = []
    for _epoch in range(3):
        order = [int(mask[0, 0, 0]) for index in range(len(batches)) for mask in batches[index][1]]
        assert sorted(order) == list(range(10))  # every image once per epoch
        orders.append(order)
        batches.on_epoch_end()
    assert len({tuple(order) for order in orders}) == 3
    validation = arrays.Batches(images, masks, batch_size=4)
    np.testing.assert_array_equal(validation[0][0], images[:4])
    np.testing.assert_array_equal(validation[2][1], masks[8:])
    validation.on_epoch_end()
    np.testing.assert_array_equal(validation[1][1], masks[4:8])


def test_augmented_batches_are_reproducible_whatever_the_order_they_are_asked_in():
    random = np.random.default_rng(4)
    images = np.stack([_smooth_image(random) for _ in range(6)])
    masks = np.stack([_blocky_mask()] * 6)
    options = config.AugmentOptions()

    def epochs(order: list[int]) -> list[dict[int, tuple[np.ndarray, np.ndarray]]]:
        batches = arrays.Batches(images, masks, batch_size=4, training=True, augment=options, seed=7)
        seen = []
        for _epoch in range(2):
            seen.append({index: batches[index] for index in order})
            batches.on_epoch_end()
        return seen

    forward, backward = epochs([0, 1]), epochs([1, 0])
    for first, second in zip(forward, backward, strict=True):
        for index in (0, 1):
            np.testing.assert_array_equal(first[index][0], second[index][0])
            np.testing.assert_array_equal(first[index][1], second[index][1])
    # A new epoch draws new transforms; another seed draws others.
    assert not np.array_equal(forward[0][0][0], forward[1][0][0])
    other_seed = arrays.Batches(images, masks, batch_size=4, training=True, augment=options, seed=8)
    assert not np.array_equal(other_seed[0][0], forward[0][0][0])
    for batch_images, batch_masks in forward[0].values():
        assert batch_images.dtype == np.float32 and 0.0 <= batch_images.min() <= batch_images.max() <= 1.0
        assert set(np.unique(batch_masks)) <= {0, 1, 2}


def test_batches_refuse_mismatched_or_empty_arrays():
    images, masks = _numbered(4)
    with pytest.raises(ValueError, match="4 images but 3 masks"):
        arrays.Batches(images, masks[:3], batch_size=2)
    with pytest.raises(ValueError, match="no images"):
        arrays.Batches(images[:0], masks[:0], batch_size=2)


def _write_npz(path, count: int, test_count: int, side: int) -> None:
    images, masks = _numbered(count, side)
    np.savez(
        path,
        train_images=(images * 255).astype(np.uint8),
        train_masks=masks[..., 0].astype(np.uint8) % 3,
        test_images=(images[:test_count] * 255).astype(np.uint8),
        test_masks=masks[:test_count, ..., 0].astype(np.uint8) % 3,
    )


def test_make_splits_splits_as_make_datasets_does(tmp_path):
    path = tmp_path / "pets-16.npz"
    _write_npz(path, count=20, test_count=6, side=16)
    profile = config.with_overrides(
        config.get_profile("smoke"), image_size=16, batch_size=4, validation_fraction=0.25
    )
    splits = arrays.make_splits(path, profile, seed=0, workers=1)
    assert splits.counts == {"train": 15, "validation": 5, "test": 6} and splits.image_size == 16
    # The validation images are the last quarter of the training split, in order and unaugmented.
    validation_masks = np.concatenate([splits.validation[i][1] for i in range(len(splits.validation))])
    np.testing.assert_array_equal(validation_masks[:, 0, 0, 0], np.arange(15, 20) % 3)
    assert splits.train.training and splits.train.augment == config.AUGMENTATIONS["standard"]
    assert splits.test_images.shape == (6, 16, 16, 3) and splits.test_masks.shape == (6, 16, 16, 1)
    assert splits.test_images.dtype == np.float32 and splits.test_images.max() <= 1.0
    assert splits.held_out is None

    limited = arrays.make_splits(path, config.with_overrides(profile, max_train_examples=8), seed=0)
    assert limited.counts == {"train": 6, "validation": 2, "test": 6}
    held_images, held_masks = limited.held_out
    # The images after the first 8, which the limited run never trains or validates on.
    np.testing.assert_allclose(held_images[:, 0, 0, 0], np.arange(8, 20) / 100, atol=1 / 255)
    assert len(held_masks) == 12

    with pytest.raises(ValueError, match=r"16 px images but the run asks for 64 px.*--image-size 64"):
        arrays.make_splits(path, config.with_overrides(profile, image_size=64), seed=0)
    incomplete = tmp_path / "incomplete.npz"
    np.savez(incomplete, train_images=np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(
        ValueError, match=r"lacks the array\(s\) \['train_masks', 'test_images', 'test_masks'\]"
    ):
        arrays.read_npz(incomplete)
    assert arrays.npz_image_size(path) == 16
