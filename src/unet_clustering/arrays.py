"""The dataset as numpy arrays, and its training augmentation without TensorFlow.

``data.py`` feeds training through tf.data. The lent GPU machine runs Keras on JAX and has no
TensorFlow (``bench/RESULTS.md``, section 3), so ``bench/make_npz.py`` first writes the splits
into an ``.npz`` file where TensorFlow is, and this module reads them back on that machine and
batches them for ``model.fit``.

Training batches are augmented as ``data.augment_pair`` augments them: for each image, one zoom
by a random factor in ``[1, max_scale]`` (the image bilinear, the mask nearest neighbour), a
random crop back to size at a whole-pixel offset, a random left-right flip of both, then
brightness, contrast and saturation jitter of the image only, clipped to [0, 1]. The draws have
the same distributions, and for the same draw the two give the same masks and the same images
to within 1e-4 (``tests/test_arrays.py`` checks this against TensorFlow), so scores from either
source are comparable. Used by ``bench/anchors.py --npz`` and
``bench/quality.py --npz``; no notebook needs it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import cv2
import keras
import numpy as np

from unet_clustering import config

#: Arrays an ``.npz`` file from ``bench/make_npz.py`` must hold.
NPZ_KEYS = ("train_images", "train_masks", "test_images", "test_masks")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read ``path`` into float32 images in [0, 1] ``(N, S, S, 3)`` and int32 masks ``(N, S, S, 1)``.

    Returns ``{"train_images", "train_masks", "test_images", "test_masks"}``; the file stores uint8
    images and uint8 masks (class indices 0=pet, 1=background, 2=border).
    """
    with np.load(path) as stored:
        missing = [key for key in NPZ_KEYS if key not in stored.files]
        if missing:
            raise ValueError(f"{path} lacks the array(s) {missing}; expected {list(NPZ_KEYS)}.")
        arrays = {key: stored[key] for key in NPZ_KEYS}
    out = {}
    for split in ("train", "test"):
        out[f"{split}_images"] = arrays[f"{split}_images"].astype(np.float32) / 255.0
        mask = arrays[f"{split}_masks"].astype(np.int32)
        out[f"{split}_masks"] = mask[..., None] if mask.ndim == 3 else mask
    return out


def npz_image_size(path: Path) -> int:
    """Side of the images stored in an ``.npz`` file from ``bench/make_npz.py``."""
    with np.load(path) as stored:
        return int(stored["train_images"].shape[1])


@dataclasses.dataclass(frozen=True)
class Transform:
    """One random draw of :func:`augment_pair`: what happens to one image and its mask.

    ``scaled_size`` is the side the image is zoomed to (``ceil(side * scale)``, as
    ``data.augment_pair`` resizes), ``offset`` the ``(row, column)`` of the crop in it, ``flip``
    whether image and mask are mirrored left-right, and the last three the colour jitter
    (``None`` without it): brightness added, contrast factor and saturation factor.
    """

    scaled_size: int
    offset: tuple[int, int]
    flip: bool
    brightness: float | None = None
    contrast: float | None = None
    saturation: float | None = None


def draw_transform(random: np.random.Generator, side: int, options: config.AugmentOptions) -> Transform:
    """Draw one :class:`Transform` for a ``side``-pixel image, with ``data.augment_pair``'s distributions."""
    scale = random.uniform(1.0, options.max_scale)
    scaled_size = math.ceil(side * scale)
    offset = tuple(int(value) for value in random.integers(0, scaled_size - side + 1, size=2))
    flip = bool(options.flip and random.random() < 0.5)
    if not options.color_jitter:
        return Transform(scaled_size, offset, flip)
    return Transform(
        scaled_size,
        offset,
        flip,
        brightness=random.uniform(-options.brightness, options.brightness),
        contrast=random.uniform(*options.contrast),
        saturation=random.uniform(*options.saturation),
    )


def transform_pair(
    image: np.ndarray, mask: np.ndarray, transform: Transform
) -> tuple[np.ndarray, np.ndarray]:
    """Zoom, crop and flip ``image`` ``(S, S, 3)`` float32 and ``mask`` ``(S, S, 1)`` int together.

    One affine map from output pixels back to input ones: resizing to ``scaled_size`` with
    half-pixel centres (as ``tf.image.resize``), then taking the crop at ``offset``, sends output
    column ``x`` to input column ``(x + offset + 0.5) / zoom - 0.5``, mirrored when ``flip``. The
    image is sampled bilinearly (OpenCV) and the mask at the nearest pixel, so labels stay on their
    pixels. Colour jitter is not applied here (see :func:`jitter_colours`).
    """
    side = image.shape[0]
    zoom = transform.scaled_size / side
    row_offset, column_offset = transform.offset
    if transform.flip:
        column_start = side - 1 + column_offset
        column_step = -1.0
    else:
        column_start, column_step = column_offset, 1.0
    output_to_input = np.array(
        [
            [column_step / zoom, 0.0, (column_start + 0.5) / zoom - 0.5],
            [0.0, 1.0 / zoom, (row_offset + 0.5) / zoom - 0.5],
        ]
    )
    warped_image = cv2.warpAffine(
        np.ascontiguousarray(image, dtype=np.float32),
        output_to_input,
        (side, side),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    rows = _nearest_indices(side, transform.scaled_size, row_offset, flip=False)
    columns = _nearest_indices(side, transform.scaled_size, column_offset, flip=transform.flip)
    return warped_image, mask[np.ix_(rows, columns)]


def _nearest_indices(side: int, scaled_size: int, offset: int, flip: bool) -> np.ndarray:
    """Input pixel of each output pixel along one axis, for the mask.

    Computed in float32 as TensorFlow's nearest-neighbour resize does (half-pixel centres), so
    that ties fall on the same side and the masks of the two sources match pixel for pixel.
    """
    scale = np.float32(side) / np.float32(scaled_size)
    positions = np.arange(offset, offset + side, dtype=np.float32) + np.float32(0.5)
    indices = np.minimum(np.floor(positions * scale).astype(np.int64), side - 1)
    return indices[::-1] if flip else indices


def jitter_colours(
    images: np.ndarray, brightness: np.ndarray, contrast: np.ndarray, saturation: np.ndarray
) -> np.ndarray:
    """Brightness, then contrast, then saturation jitter of ``images`` ``(N, S, S, 3)``, clipped to [0, 1].

    The three factors hold one value per image, applied as TensorFlow's ``adjust_brightness``
    (add), ``adjust_contrast`` (scale each channel's distance from its mean over the image) and
    ``adjust_saturation`` (scale the HSV saturation, capped at 1). Scaling the saturation with hue
    and value fixed moves each channel along its line to the brightest channel: a channel ``c``
    becomes ``v - (v - c) * min(factor, 1 / s)``, where ``v`` is the largest channel and
    ``s = (v - min) / v`` the saturation, so no colour-space round trip is needed.
    """
    # Channels first, so that every step below runs over contiguous (rows, columns) planes: numpy
    # is several times slower broadcasting over a last axis of 3.
    per_image = (slice(None), None, None, None)
    out = np.ascontiguousarray(np.moveaxis(images, -1, 1), dtype=np.float32)
    out += np.asarray(brightness, np.float32)[per_image]
    means = out.mean(axis=(2, 3), keepdims=True, dtype=np.float32)
    out -= means
    out *= np.asarray(contrast, np.float32)[per_image]
    out += means
    value = np.maximum(np.maximum(out[:, 0], out[:, 1]), out[:, 2])[:, None]
    spread = value - np.minimum(np.minimum(out[:, 0], out[:, 1]), out[:, 2])[:, None]
    # Where value <= 0 or the pixel is grey, HSV saturation is 0 and the pixel does not change:
    # there the ratio stays 1.
    has_colour = (value > 0) & (spread > 0)
    ratio = np.ones_like(value)
    np.divide(value, spread, out=ratio, where=has_colour)
    np.minimum(ratio, np.asarray(saturation, np.float32)[per_image], out=ratio, where=has_colour)
    # c' = v - (v - c) * ratio, in place.
    np.subtract(value, out, out=out)
    out *= ratio
    np.subtract(value, out, out=out)
    np.clip(out, 0.0, 1.0, out=out)
    return np.ascontiguousarray(np.moveaxis(out, 1, -1))


def augment_batch(
    images: np.ndarray, masks: np.ndarray, random: np.random.Generator, options: config.AugmentOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Augment every pair of a batch with its own random :class:`Transform` (see the module docstring)."""
    transforms = [draw_transform(random, images.shape[1], options) for _ in range(len(images))]
    pairs = [transform_pair(image, mask, t) for image, mask, t in zip(images, masks, transforms, strict=True)]
    out_images = np.stack([image for image, _ in pairs])
    out_masks = np.stack([mask for _, mask in pairs])
    if options.color_jitter:
        out_images = jitter_colours(
            out_images,
            np.array([t.brightness for t in transforms]),
            np.array([t.contrast for t in transforms]),
            np.array([t.saturation for t in transforms]),
        )
    return out_images, out_masks


class Batches(keras.utils.PyDataset):
    """Batches ``(images, masks)`` of arrays for ``model.fit``; for training, shuffled and augmented.

    With ``training``, every epoch draws a new order and, when ``augment`` is given, new random
    transforms (:func:`augment_batch`). Each batch's draws come from the run's seed, the epoch and
    the batch index only, so a run is reproducible whatever order Keras asks for the batches in.
    Without ``training`` the batches are the arrays in order, unchanged (validation).

    ``workers`` threads prepare batches ahead of the model (``keras.utils.PyDataset``): augmenting
    costs about half a millisecond per 128 px image on one core, which a GPU training thousands of
    images per second would otherwise wait for.
    """

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        batch_size: int,
        training: bool = False,
        augment: config.AugmentOptions | None = None,
        seed: int = 0,
        workers: int = 1,
    ):
        super().__init__(workers=workers, use_multiprocessing=False)
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks.")
        if len(images) == 0:
            raise ValueError("Batches got no images.")
        self.images, self.masks, self.batch_size = images, masks, batch_size
        self.training, self.augment, self.seed = training, augment, seed
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if not self.training:
            return np.arange(len(self.images))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images, masks = self.images[chosen], self.masks[chosen]
        if self.training and self.augment is not None:
            random = np.random.default_rng([self.seed, self.epoch, index])
            images, masks = augment_batch(images, masks, random, self.augment)
        return images, masks

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()

    def restart(self) -> None:
        """Go back to the first epoch, so that another model trains on the very same batches."""
        self.epoch = 0
        self.order = self._order()


@dataclasses.dataclass
class Splits:
    """Training and validation batches for ``fit``, and the test split as arrays."""

    train: Batches
    validation: Batches
    test_images: np.ndarray
    test_masks: np.ndarray
    counts: dict[str, int]
    image_size: int
    #: The training images after the first ``max_train_examples`` (never trained on), when limited.
    held_out: tuple[np.ndarray, np.ndarray] | None = None


def make_splits(
    path: Path,
    profile: config.Profile,
    seed: int,
    augment: config.AugmentOptions | None = config.AUGMENTATIONS["standard"],
    workers: int | None = None,
) -> Splits:
    """The ``.npz`` file's splits under ``profile``, as ``data.make_datasets`` splits tfds.

    The first ``max_train_examples`` training images (all by default) are used; their last
    ``validation_fraction`` validates, as in ``data.make_datasets``. The file's image size must be
    the profile's: a file of another size is refused with the command that writes the right one.
    ``workers`` (default: up to 8, one per core) threads augment the training batches.
    """
    arrays = read_npz(path)
    image_size = arrays["train_images"].shape[1]
    if image_size != profile.image_size:
        raise ValueError(
            f"{path} holds {image_size} px images but the run asks for {profile.image_size} px; "
            f"write another file with bench/make_npz.py --image-size {profile.image_size}."
        )
    images, masks = arrays["train_images"], arrays["train_masks"]
    counts = config.split_sizes(len(images), len(arrays["test_images"]), profile)
    fit_end = counts["train"]
    validation_end = fit_end + counts["validation"]
    held_out = None
    if profile.max_train_examples is not None and validation_end < len(images):
        held_out = (images[validation_end:], masks[validation_end:])
    return Splits(
        train=Batches(
            images[:fit_end],
            masks[:fit_end],
            profile.batch_size,
            training=True,
            augment=augment,
            seed=seed,
            workers=workers or min(8, os.cpu_count() or 1),
        ),
        validation=Batches(images[fit_end:validation_end], masks[fit_end:validation_end], profile.batch_size),
        test_images=arrays["test_images"][: counts["test"]],
        test_masks=arrays["test_masks"][: counts["test"]],
        counts=counts,
        image_size=image_size,
        held_out=held_out,
    )
