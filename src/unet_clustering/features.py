"""Turn a trained U-Net into a feature extractor and collect per-pixel features for clustering.

Taught in ``04_feature_extraction``.

The U-Net's intermediate activations describe every pixel at several scales. A *hypercolumn* is
the vector you get by stacking, for one pixel, the activations of several layers after resizing
each layer's map to the image resolution. Clustering those vectors (notebook ``05_clustering``)
shows what the network learned without using the labels.

Memory is the main constraint: a 128 x 128 image with a few hundred channels per pixel is already
several megabytes of float32, so whole-dataset hypercolumns do not fit in memory for long. The
functions here therefore work one batch at a time and keep only sampled pixels
(:func:`sample_pixel_features`) or one image (:func:`image_pixel_features`).

Only ``keras`` (``keras.ops``), ``numpy`` and ``scikit-learn`` are used, so this module runs on
any Keras 3 backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from unet_clustering import clustering, config

#: Layers whose outputs make the default hypercolumn. ``bottleneck`` is the lowest-resolution,
#: most semantic map (it has seen the largest part of the image); ``dec1`` is the last decoder
#: block, at full resolution, with per-pixel detail such as edges; ``dec2`` sits in between
#: (half resolution). These three exist in every U-Net of depth 2 or more built by ``unet.py``.
DEFAULT_LAYERS: tuple[str, ...] = ("bottleneck", "dec2", "dec1")

#: Images pushed through the network at once, when a caller does not say.
DEFAULT_BATCH_SIZE = 16

#: Ways to share a per-image pixel budget between the classes (see :func:`sample_pixel_features`).
SAMPLING_STRATEGIES: tuple[str, ...] = ("balanced", "proportional")

#: Interpolation used to bring low-resolution feature maps up to the image size.
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "nearest")

#: Per-channel statistics :func:`masked_pool` can describe a region with.
POOL_STATISTICS: tuple[str, ...] = ("mean", "std")

#: The predicted classes that make up the region over which a pet is described (see
#: :func:`segment_region`). ``"pet"`` leaves out the border band, a few pixels wide, which mixes
#: pet and background.
SEGMENT_REGIONS: dict[str, tuple[int, ...]] = {
    "pet": (config.PET,),
    "pet+border": (config.PET, config.BORDER),
}

#: Name of the representation that joins every encoder stage (see :func:`segment_representations`).
ENCODER_REPRESENTATION = "encoder"

#: Name of the one that joins the inner encoder stages: all but the first (full resolution, close
#: to raw colour and edges) and the bottleneck (shaped by what the decoder needs for the mask).
INNER_ENCODER_REPRESENTATION = "inner encoder"

#: Name of the colour baseline among :func:`segment_representations`.
COLOUR_BASELINE = "Lab colour of the region (baseline)"

#: Appended to a joined representation's name when the region's colour statistics join it as one
#: more block (see :func:`segment_representations`).
WITH_COLOUR = " + colour"

#: Version of the layout written by :func:`save_features`; bump it when the layout changes.
FEATURES_FORMAT_VERSION = 1

#: Array names :func:`save_features` uses itself; extra arrays must not reuse them.
_RESERVED_ARRAY_NAMES = ("features", "labels", "metadata_json")

#: Bytes read at a time when hashing a model file.
_HASH_CHUNK_BYTES = 1 << 20


class StaleFeaturesError(ValueError):
    """Saved features were computed by a different model file than the one expected."""


class EmptyRegionError(ValueError):
    """A region mask given to :func:`masked_average_pool` selects no pixel."""


# --------------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------------


def feature_extractor(model: keras.Model, layer_names: Sequence[str] = DEFAULT_LAYERS) -> keras.Model:
    """Build a model that maps images to the outputs of ``layer_names`` of ``model``.

    Args:
        model: a functional Keras model, normally the U-Net from ``unet.build_unet``.
        layer_names: names of the layers whose outputs to return, in this order.

    Returns:
        A ``keras.Model`` named ``"feature_extractor"`` sharing ``model``'s weights. Calling it on
        images of shape ``(B, S, S, 3)`` gives one ``(B, h, w, channels)`` map per layer name. The
        names are kept in its attribute ``feature_layer_names``.

    Raises:
        ValueError: ``layer_names`` is empty, repeats a name, or names a layer ``model`` does not
            have (the message lists the layers it does have).

    Taught in ``04_feature_extraction``.
    """
    if isinstance(layer_names, str):
        layer_names = (layer_names,)
    layer_names = tuple(layer_names)
    if not layer_names:
        raise ValueError("layer_names is empty: name at least one layer, for example DEFAULT_LAYERS.")
    if len(set(layer_names)) != len(layer_names):
        raise ValueError(f"layer_names={layer_names!r} repeats a name; give each layer once.")
    available = [layer.name for layer in model.layers]
    unknown = [name for name in layer_names if name not in available]
    if unknown:
        raise ValueError(
            f"layer_names contains {unknown!r}, which model {model.name!r} does not have. "
            f"Its layers are: {available}."
        )
    outputs = [model.get_layer(name).output for name in layer_names]
    # A single-input model gets its input as a tensor, not a one-item list, so that Keras does
    # not warn about the structure of the inputs at every call.
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    extractor = keras.Model(inputs=inputs, outputs=outputs, name="feature_extractor")
    extractor.feature_layer_names = layer_names
    return extractor


def extractor_layer_names(extractor: keras.Model) -> tuple[str, ...]:
    """The layer names whose outputs ``extractor`` returns, in order.

    Taught in ``04_feature_extraction``.
    """
    names = getattr(extractor, "feature_layer_names", None)
    if names is None:
        names = getattr(extractor, "output_names", None)
    if names is None:
        raise ValueError("This model was not built by feature_extractor(); its layer names are unknown.")
    return tuple(names)


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"images must have shape (batch, height, width, channels); got shape {images.shape}. "
            "For one image, use images[None] or image_pixel_features()."
        )
    if images.shape[0] == 0:
        raise ValueError("images is empty (0 images); pass at least one image.")
    return images.astype(np.float32, copy=False)


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    return int(batch_size)


def _feature_batches(
    extractor: keras.Model, images: np.ndarray, batch_size: int
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Yield ``(first image index, [one numpy map per layer])`` for consecutive batches."""
    images = _check_images(images)
    batch_size = _check_batch_size(batch_size)
    for start in range(0, images.shape[0], batch_size):
        outputs = extractor.predict_on_batch(images[start : start + batch_size])
        # A model with a single output gives an array, not a one-item list.
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        yield start, [np.asarray(output, dtype=np.float32) for output in outputs]


def extract_feature_maps(
    extractor: keras.Model, images: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE
) -> list[np.ndarray]:
    """Run ``extractor`` over ``images`` in batches and return each layer's maps.

    Args:
        extractor: a model from :func:`feature_extractor`.
        images: float32 array ``(N, S, S, 3)`` with values in ``[0, 1]``.
        batch_size: images per forward pass.

    Returns:
        One float32 array per layer, of shape ``(N, h, w, channels)`` at that layer's own
        resolution (nothing is resized here). Full-resolution layers cost ``N * S * S * channels``
        floats: use :func:`sample_pixel_features` for many images.

    Taught in ``04_feature_extraction``.
    """
    collected: list[list[np.ndarray]] | None = None
    for _, maps in _feature_batches(extractor, images, batch_size):
        if collected is None:
            collected = [[] for _ in maps]
        for store, feature_map in zip(collected, maps, strict=True):
            store.append(feature_map)
    assert collected is not None  # _check_images refused an empty input
    return [np.concatenate(parts, axis=0) for parts in collected]


def _as_size(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        height = width = int(size)
    else:
        size = tuple(int(value) for value in size)
        if len(size) != 2:
            raise ValueError(f"{name} must be an int or (height, width); got {size!r}.")
        height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"{name} must be positive; got {(height, width)!r}.")
    return height, width


def upsample_to(
    feature_map: np.ndarray, size: int | Sequence[int], interpolation: str = "bilinear"
) -> np.ndarray:
    """Resize a feature map to ``size`` (height, width) with ``keras.ops.image.resize``.

    Args:
        feature_map: ``(h, w, channels)`` or ``(B, h, w, channels)``.
        size: the target ``(height, width)``, or one int for a square.
        interpolation: ``"bilinear"`` (default) blends the four nearest cells, so a low-resolution
            map gives smooth values without blocky 16 x 16 squares; ``"nearest"`` copies each cell
            unchanged, which keeps the exact activations but draws the coarse grid into any
            clustered map.

    Returns:
        A float32 numpy array with the same rank as ``feature_map`` and spatial size ``size``.
        A map already at that size is returned unchanged (as float32).

    Taught in ``04_feature_extraction``.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation={interpolation!r} is not supported; choose one of {INTERPOLATIONS}.")
    target = _as_size(size)
    feature_map = np.asarray(feature_map, dtype=np.float32)
    if feature_map.ndim not in (3, 4):
        raise ValueError(
            f"feature_map must be (height, width, channels) or (batch, height, width, channels); "
            f"got shape {feature_map.shape}."
        )
    spatial = feature_map.shape[-3:-1]
    if tuple(spatial) == target:
        return feature_map
    resized = keras.ops.image.resize(feature_map, target, interpolation=interpolation)
    return np.asarray(keras.ops.convert_to_numpy(resized), dtype=np.float32)


def _hypercolumn_batch(maps: list[np.ndarray], size: tuple[int, int], interpolation: str) -> np.ndarray:
    """Upsample each ``(B, h, w, c)`` map to ``size`` and concatenate them along channels."""
    return np.concatenate([upsample_to(feature_map, size, interpolation) for feature_map in maps], axis=-1)


def hypercolumns(
    extractor: keras.Model,
    images: np.ndarray,
    image_size: int | Sequence[int] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Per-pixel hypercolumns: every layer's map resized to ``image_size`` and stacked.

    Args:
        extractor: a model from :func:`feature_extractor`.
        images: float32 ``(N, S, S, 3)``.
        image_size: output ``(height, width)``; ``None`` means the images' own size.
        batch_size: images per forward pass.
        interpolation: see :func:`upsample_to`.

    Returns:
        float32 ``(N, height, width, D)`` where ``D`` is the sum of the layers' channels, in the
        order of ``extractor_layer_names(extractor)``. This holds ``N * height * width * D``
        floats at once; for more than a handful of images prefer :func:`sample_pixel_features`.

    Taught in ``04_feature_extraction``.
    """
    images = _check_images(images)
    size = _as_size(image_size if image_size is not None else images.shape[1:3], "image_size")
    result: np.ndarray | None = None
    for start, maps in _feature_batches(extractor, images, batch_size):
        batch = _hypercolumn_batch(maps, size, interpolation)
        if result is None:
            # Filled batch by batch, so only one batch of upsampled maps exists beside the result.
            result = np.empty((images.shape[0], *size, batch.shape[-1]), dtype=np.float32)
        result[start : start + batch.shape[0]] = batch
    assert result is not None
    return result


def image_pixel_features(
    extractor: keras.Model,
    image: np.ndarray,
    image_size: int | Sequence[int] | None = None,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """All hypercolumns of one image, one row per pixel: shape ``(height * width, D)``.

    Row ``r`` is pixel ``(r // width, r % width)``, so ``labels.reshape(height, width)`` turns
    per-row cluster labels back into a map. ``image`` may be ``(S, S, 3)`` or ``(1, S, S, 3)``.

    Taught in ``04_feature_extraction`` (and used in ``05_clustering`` to draw clustered maps).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(
            f"image must be (height, width, channels) or (1, height, width, channels); got {image.shape}."
        )
    columns = hypercolumns(extractor, image, image_size=image_size, batch_size=1, interpolation=interpolation)
    return columns.reshape(-1, columns.shape[-1])


# --------------------------------------------------------------------------------------------
# Sampling pixels with a known class mix
# --------------------------------------------------------------------------------------------


class PixelSample(NamedTuple):
    """Pixels sampled by :func:`sample_pixel_features`; unpacks as four arrays.

    ``pixel_index`` is the flat index ``row * width + column`` within image ``image_index``.
    """

    features: np.ndarray
    labels: np.ndarray
    image_index: np.ndarray
    pixel_index: np.ndarray

    @property
    def class_counts(self) -> np.ndarray:
        """Sampled pixels per class, ``(NUM_CLASSES,)`` int64 (classes absent from the sample count 0)."""
        return np.bincount(self.labels, minlength=config.NUM_CLASSES)

    def class_counts_by_name(self) -> dict[str, int]:
        """``class_counts`` keyed by class name, ready for JSON metadata."""
        return {name: int(count) for name, count in zip(config.CLASS_NAMES, self.class_counts, strict=True)}


def _as_class_masks(masks: np.ndarray, num_images: int, num_classes: int) -> np.ndarray:
    """Accept ``(N, H, W)`` or ``(N, H, W, 1)`` class-index masks; return ``(N, H, W)`` int64."""
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W) or (N, H, W, 1); got {masks.shape}.")
    if masks.shape[0] != num_images:
        raise ValueError(f"masks holds {masks.shape[0]} masks but images holds {num_images} images.")
    if not np.issubdtype(masks.dtype, np.integer):
        if not np.all(np.equal(np.mod(masks, 1), 0)):
            raise ValueError("masks must hold integer class indices; found fractional values.")
    masks = masks.astype(np.int64)
    if masks.size and (masks.min() < 0 or masks.max() >= num_classes):
        raise ValueError(
            f"masks values must be class indices in [0, {num_classes - 1}]; found values from "
            f"{masks.min()} to {masks.max()}."
        )
    return masks


def _balanced_quotas(class_totals: np.ndarray, budget: int) -> np.ndarray:
    """Share ``budget`` pixels equally between the classes present, water-filling shortfalls.

    Classes are served from the rarest up: each takes ``min(its pixels, an equal share of what
    is left)``, so a class too small for its share gives the rest to the larger ones. The shares
    differ by at most one pixel whenever every class has enough pixels.
    """
    quotas = np.zeros_like(class_totals)
    present = [index for index in np.argsort(class_totals, kind="stable") if class_totals[index] > 0]
    remaining = budget
    for position, class_index in enumerate(present):
        classes_left = len(present) - position
        quotas[class_index] = min(class_totals[class_index], remaining // classes_left)
        remaining -= quotas[class_index]
    return quotas


def _proportional_quotas(class_totals: np.ndarray, budget: int) -> np.ndarray:
    """Share ``budget`` in proportion to the class sizes (largest-remainder rounding).

    Every class gets the floor of its exact share; the pixels left over go to the classes with the
    largest fractional parts (lower class index first on ties), so quotas sum to ``budget``.
    """
    total = int(class_totals.sum())
    exact = class_totals * budget / total
    quotas = np.floor(exact).astype(np.int64)
    leftover = budget - int(quotas.sum())
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[:leftover]] += 1
    return quotas


def sample_pixel_features(
    extractor: keras.Model,
    images: np.ndarray,
    masks: np.ndarray,
    pixels_per_image: int,
    seed: int = config.DEFAULT_SEED,
    strategy: str = "balanced",
    batch_size: int = DEFAULT_BATCH_SIZE,
    interpolation: str = "bilinear",
    num_classes: int = config.NUM_CLASSES,
) -> PixelSample:
    """Sample ``pixels_per_image`` hypercolumns from every image, with a known class mix.

    Pixels are chosen from the masks first, then the images go through the network one batch at
    a time and only the chosen pixels' hypercolumns are kept: at most one batch of
    full-resolution hypercolumns exists at any moment.

    Args:
        extractor: a model from :func:`feature_extractor`.
        images: float32 ``(N, S, S, 3)``.
        masks: class indices ``(N, S, S)`` or ``(N, S, S, 1)`` at the images' resolution.
        pixels_per_image: pixels to keep per image (capped at ``S * S``); the profile's
            ``pixels_per_image`` in the notebooks.
        seed: seeds the choice of pixels; the result does not depend on ``batch_size``.
        strategy: how an image's budget is split between the classes it contains.
            ``"balanced"`` gives each present class an equal share (a class with too few pixels
            gives all of them and the rest goes to the others), so the thin ``border`` class is
            not drowned by background. ``"proportional"`` gives each class a share proportional
            to its area in that image (a stratified version of uniform sampling).
        batch_size: images per forward pass.
        interpolation: see :func:`upsample_to`.
        num_classes: number of classes in ``masks``.

    Returns:
        A :class:`PixelSample` ``(features (n, D) float32, labels (n,) int64, image_index (n,),
        pixel_index (n,))``; ``.class_counts`` reports how many pixels of each class were taken.

    Taught in ``04_feature_extraction``.
    """
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not supported; choose one of {SAMPLING_STRATEGIES}.")
    if int(pixels_per_image) < 1:
        raise ValueError(f"pixels_per_image must be a positive integer; got {pixels_per_image!r}.")
    images = _check_images(images)
    masks = _as_class_masks(masks, images.shape[0], num_classes)
    height, width = masks.shape[1:]
    budget = min(int(pixels_per_image), height * width)
    quota_rule = _balanced_quotas if strategy == "balanced" else _proportional_quotas

    rng = np.random.default_rng(seed)
    chosen_pixels: list[np.ndarray] = []
    for mask in masks:
        flat = mask.reshape(-1)
        quotas = quota_rule(np.bincount(flat, minlength=num_classes), budget)
        picked = [
            rng.choice(np.flatnonzero(flat == class_index), size=int(quota), replace=False)
            for class_index, quota in enumerate(quotas)
            if quota > 0
        ]
        chosen_pixels.append(np.sort(np.concatenate(picked)))

    feature_rows: list[np.ndarray] = []
    for start, maps in _feature_batches(extractor, images, batch_size):
        per_layer_rows = []
        for feature_map in maps:
            # One layer at a time: only one layer's upsampled batch is in memory.
            upsampled = upsample_to(feature_map, (height, width), interpolation)
            flat_maps = upsampled.reshape(upsampled.shape[0], height * width, -1)
            per_layer_rows.append(
                np.concatenate(
                    [flat_maps[offset, chosen_pixels[start + offset]] for offset in range(flat_maps.shape[0])]
                )
            )
        feature_rows.append(np.concatenate(per_layer_rows, axis=-1))

    image_index = np.concatenate(
        [np.full(len(pixels), index, dtype=np.int64) for index, pixels in enumerate(chosen_pixels)]
    )
    pixel_index = np.concatenate(chosen_pixels).astype(np.int64)
    labels = masks.reshape(masks.shape[0], -1)[image_index, pixel_index]
    return PixelSample(
        features=np.concatenate(feature_rows).astype(np.float32, copy=False),
        labels=labels.astype(np.int64),
        image_index=image_index,
        pixel_index=pixel_index,
    )


# --------------------------------------------------------------------------------------------
# Dimensionality reduction
# --------------------------------------------------------------------------------------------


class ClippedPCA(PCA):
    """PCA whose integer ``n_components`` is clipped to ``min(n_samples, n_features)`` at fit time.

    Plain PCA raises an error when asked for more components than the data allow, which happens
    with small profiles (few pixels, few channels). Here the fit keeps as many components as
    possible instead and records it: ``n_components_`` holds the number actually kept and
    ``requested_n_components_`` the number asked for.
    """

    def _clipped(self, features: np.ndarray) -> int | float | str | None:
        features = np.asarray(features)
        requested = self.n_components
        if isinstance(requested, (int, np.integer)) and not isinstance(requested, bool):
            if requested < 1:
                raise ValueError(f"n_components must be at least 1; got {requested}.")
            limit = min(features.shape[0], features.shape[1]) if features.ndim == 2 else requested
            self.requested_n_components_ = int(requested)
            return int(min(requested, limit))
        self.requested_n_components_ = requested
        return requested

    @contextlib.contextmanager
    def _clipped_while_fitting(self, features: np.ndarray) -> Iterator[None]:
        """Fit with the clipped number of components, then give back the one asked for."""
        requested = self.n_components
        self.n_components = self._clipped(features)
        try:
            yield
        finally:
            self.n_components = requested

    def fit(self, X, y=None):  # noqa: N803 (scikit-learn's argument name)
        with self._clipped_while_fitting(X):
            return super().fit(X, y)

    def fit_transform(self, X, y=None):  # noqa: N803
        with self._clipped_while_fitting(X):
            return super().fit_transform(X, y)


#: Principal components kept before clustering pixel features (notebooks 04-06, ``predict``).
DEFAULT_PCA_COMPONENTS = 16


def make_reducer(n_components: int | float = DEFAULT_PCA_COMPONENTS, seed: int = 0) -> Pipeline:
    """A ``StandardScaler`` then ``PCA`` pipeline for hypercolumns, steps ``"scale"`` and ``"pca"``.

    Standardising first matters: channels from different layers have very different scales, and
    PCA would otherwise follow whichever layer has the largest activations. An integer
    ``n_components`` is clipped to ``min(n_samples, n_features)`` when the pipeline is fitted
    (see :class:`ClippedPCA`); a float in ``(0, 1)`` keeps enough components to explain that
    fraction of the variance.

    Taught in ``04_feature_extraction``.
    """
    if isinstance(n_components, bool) or not isinstance(n_components, (int, float, np.integer, np.floating)):
        raise ValueError(f"n_components must be a positive int or a float in (0, 1); got {n_components!r}.")
    if isinstance(n_components, (float, np.floating)) and not 0 < n_components < 1:
        raise ValueError(f"A float n_components must lie in (0, 1); got {n_components!r}.")
    if n_components <= 0:
        raise ValueError(f"n_components must be positive; got {n_components!r}.")
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("pca", ClippedPCA(n_components=n_components, random_state=seed)),
        ]
    )


def explained_variance_report(reducer: Pipeline | PCA) -> dict[str, Any]:
    """Summarise a fitted reducer: components kept/requested and the variance they explain.

    Returns a dict with ``n_components`` (kept), ``requested_n_components``, ``ratio`` (per
    component), ``cumulative`` and ``total`` (the fraction of variance all kept components explain).

    Taught in ``04_feature_extraction``.
    """
    pca = reducer.named_steps["pca"] if isinstance(reducer, Pipeline) else reducer
    if not hasattr(pca, "explained_variance_ratio_"):
        raise ValueError("The reducer is not fitted yet: call reducer.fit(features) first.")
    ratio = np.asarray(pca.explained_variance_ratio_, dtype=np.float64)
    cumulative = np.cumsum(ratio)
    return {
        "n_components": int(pca.n_components_),
        "requested_n_components": getattr(pca, "requested_n_components_", pca.n_components),
        "ratio": ratio.tolist(),
        "cumulative": cumulative.tolist(),
        "total": float(cumulative[-1]) if cumulative.size else 0.0,
    }


# --------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------


def model_fingerprint(path: str | Path) -> str:
    """The SHA-256 hex digest of the model file at ``path``.

    Saved features record it so that a later notebook can tell whether they came from the model
    file it is using (re-training rewrites the file, and its digest changes).

    Taught in ``04_feature_extraction``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file {path} does not exist; cannot fingerprint it.")
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def metadata_path(path: str | Path) -> Path:
    """Where :func:`save_features` writes the readable JSON copy of the metadata (``.json`` beside ``.npz``)."""
    return Path(path).with_suffix(".json")


def save_features(
    path: str | Path,
    features: np.ndarray,
    labels: np.ndarray,
    metadata: dict[str, Any],
    arrays: dict[str, np.ndarray] | None = None,
) -> Path:
    """Save features, labels and metadata atomically as ``path`` (npz) plus a JSON copy beside it.

    Args:
        path: the ``.npz`` file, normally ``config.artifacts_dir() / "features.npz"``.
        features: ``(n, D)`` array.
        labels: ``(n,)`` class index per row.
        metadata: JSON-serialisable facts about how the features were made. Recommended keys:
            ``layers``, ``image_size``, ``model_path``, ``profile``, ``seed``, ``strategy``. When
            ``model_path`` is given and ``model_sha256`` is not, the fingerprint is computed here.
            ``class_counts``, ``n_samples``, ``feature_dim`` and ``format_version`` are added.
        arrays: extra arrays to store, for example ``image_index`` and ``pixel_index``.

    Returns:
        ``path``. The npz also stores the metadata (as ``metadata_json``) so the two can never
        disagree; ``features.json`` is the copy for people to read.

    Taught in ``04_feature_extraction``.
    """
    path = Path(path)
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (n, D); got shape {features.shape}.")
    if labels.shape != (features.shape[0],):
        raise ValueError(
            f"labels must have shape ({features.shape[0]},) to match features; got {labels.shape}."
        )
    extra = dict(arrays or {})
    clash = sorted(set(extra) & set(_RESERVED_ARRAY_NAMES))
    if clash:
        raise ValueError(f"arrays may not use the reserved names {clash}; rename them.")

    full_metadata = dict(metadata)
    if full_metadata.get("model_path") and not full_metadata.get("model_sha256"):
        full_metadata["model_sha256"] = model_fingerprint(full_metadata["model_path"])
    if full_metadata.get("model_path"):
        full_metadata["model_path"] = str(full_metadata["model_path"])
    num_classes = int(full_metadata.get("num_classes", config.NUM_CLASSES))
    counts = (
        np.bincount(labels.astype(np.int64), minlength=num_classes) if labels.size else np.zeros(num_classes)
    )
    full_metadata.update(
        {
            "class_counts": {
                (config.CLASS_NAMES[index] if index < len(config.CLASS_NAMES) else str(index)): int(count)
                for index, count in enumerate(counts)
            },
            "n_samples": int(features.shape[0]),
            "feature_dim": int(features.shape[1]),
            "format_version": FEATURES_FORMAT_VERSION,
        }
    )
    # The readable copy is written first and its text is embedded in the npz, so the metadata in
    # the npz (the copy load_features trusts) is exactly what features.json shows.
    json_path = config.write_json(metadata_path(path), full_metadata)
    metadata_text = json_path.read_text(encoding="utf-8")

    buffer = io.BytesIO()
    np.savez_compressed(
        buffer, features=features, labels=labels, metadata_json=np.array(metadata_text), **extra
    )
    config.atomic_write_bytes(path, buffer.getvalue())
    return path


def load_features(
    path: str | Path | None = None, expected_model: str | Path | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load what :func:`save_features` wrote: ``(arrays, metadata)``.

    Args:
        path: the ``.npz`` file; ``None`` means ``features.npz`` in the artifacts folder.
        expected_model: the model file the caller uses. When given, features made by another
            model file (a different SHA-256, or none recorded) are refused with
            :class:`StaleFeaturesError`.

    Returns:
        ``arrays`` maps ``"features"``, ``"labels"`` and any extra arrays to numpy arrays;
        ``metadata`` is the dict that was saved.

    Raises:
        config.MissingArtifactError: the file does not exist (the message names the notebook
            that writes it).
        StaleFeaturesError: see ``expected_model``.

    Taught in ``04_feature_extraction``; used in ``05_clustering``.
    """
    if path is None:
        path = config.require_artifact("features.npz")
    path = Path(path)
    if not path.exists():
        maker = config.ARTIFACT_MAKERS["features.npz"]
        raise config.MissingArtifactError(
            f"{path} is missing. Run notebooks/{maker} first; it writes the sampled pixel features."
        )
    with np.load(path, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files if name != "metadata_json"}
        metadata = json.loads(str(stored["metadata_json"])) if "metadata_json" in stored.files else {}
    if expected_model is not None:
        expected = model_fingerprint(expected_model)
        recorded = metadata.get("model_sha256")
        maker = config.ARTIFACT_MAKERS["features.npz"]
        if recorded is None:
            raise StaleFeaturesError(
                f"{path} does not record which model made it, so it cannot be checked against "
                f"{expected_model}. Re-run notebooks/{maker} to recompute the features."
            )
        if recorded != expected:
            raise StaleFeaturesError(
                f"{path} was computed from a different model file (SHA-256 {recorded[:12]}...) than "
                f"{expected_model} (SHA-256 {expected[:12]}...): the model changed since. Re-run "
                f"notebooks/{maker} to recompute the features with the current model."
            )
    return arrays, metadata


# --------------------------------------------------------------------------------------------
# Segment-level features
# --------------------------------------------------------------------------------------------


def masked_average_pool(feature_map: np.ndarray, region_mask: np.ndarray) -> np.ndarray:
    """Average a ``(H, W, C)`` feature map over the pixels where ``region_mask`` ``(H, W)`` is true.

    Returns a ``(C,)`` float32 vector: one description of the whole region (for example, the pet),
    which lets notebook ``05_clustering`` cluster pets across images.

    Raises:
        EmptyRegionError: the mask selects no pixel (the average is undefined).
        ValueError: the shapes disagree.

    Taught in ``05_clustering``.
    """
    feature_map = np.asarray(feature_map, dtype=np.float32)
    region_mask = np.asarray(region_mask)
    if region_mask.ndim == 3 and region_mask.shape[-1] == 1:
        region_mask = region_mask[..., 0]
    if feature_map.ndim != 3 or region_mask.shape != feature_map.shape[:2]:
        raise ValueError(
            f"feature_map must be (H, W, C) and region_mask (H, W) of the same H, W; got "
            f"{feature_map.shape} and {region_mask.shape}."
        )
    region_mask = region_mask.astype(bool)
    selected = int(region_mask.sum())
    if selected == 0:
        raise EmptyRegionError("region_mask selects no pixel, so the region has no average.")
    return (feature_map[region_mask].sum(axis=0, dtype=np.float64) / selected).astype(np.float32)


def check_statistics(statistics: str | Sequence[str]) -> tuple[str, ...]:
    """``statistics`` as a tuple of names from :data:`POOL_STATISTICS` (one name may be a plain string).

    Raises:
        ValueError: no name, an unknown name, or a name given twice.
    """
    statistics = (statistics,) if isinstance(statistics, str) else tuple(statistics)
    unknown = [name for name in statistics if name not in POOL_STATISTICS]
    if not statistics or unknown or len(set(statistics)) != len(statistics):
        raise ValueError(
            f"statistics must name each of {POOL_STATISTICS} at most once, at least one; got {statistics!r}."
        )
    return statistics


def masked_pool(
    feature_map: np.ndarray, region_mask: np.ndarray, statistics: str | Sequence[str] = ("mean",)
) -> np.ndarray:
    """Describe the region of a ``(H, W, C)`` map by per-channel statistics of its pixels.

    ``"mean"`` is :func:`masked_average_pool`. ``"std"`` is each channel's standard deviation
    over the region, ``sqrt(mean((x - mean(x))^2))``: how much the channel's response varies
    across the region. A plain coat and a spotted one can share an average response; their
    spreads differ.

    Returns:
        float32 ``(C * len(statistics),)``: the statistics one after the other, in the order given.

    Raises:
        EmptyRegionError, ValueError: as :func:`masked_average_pool`, or unknown ``statistics``.

    Taught in ``05_clustering``.
    """
    statistics = check_statistics(statistics)
    mean = masked_average_pool(feature_map, region_mask)
    parts = []
    for name in statistics:
        if name == "mean":
            parts.append(mean)
        else:
            region_mask = np.asarray(region_mask).reshape(np.shape(feature_map)[:2]).astype(bool)
            values = np.asarray(feature_map, dtype=np.float64)[region_mask]
            parts.append(np.sqrt(np.mean((values - mean) ** 2, axis=0)).astype(np.float32))
    return np.concatenate(parts)


def pool_segments(
    extractor: keras.Model,
    images: np.ndarray,
    region_masks: np.ndarray,
    layer: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    interpolation: str = "bilinear",
    statistics: str | Sequence[str] = ("mean",),
) -> tuple[np.ndarray, int]:
    """One vector per image: ``layer``'s map pooled over that image's region mask (averaged, by default).

    The map is first resized to the masks' resolution (see :func:`upsample_to`), so a thin
    region still weighs the coarse cells it overlaps.

    Args:
        extractor: a model from :func:`feature_extractor` that returns ``layer``.
        images: float32 ``(N, S, S, 3)``.
        region_masks: boolean ``(N, H, W)`` or ``(N, H, W, 1)``, e.g. ``masks == config.PET``.
        layer: which of the extractor's layers to pool.
        statistics: what to keep of each channel inside the region (see :func:`masked_pool`);
            the default is the average alone.

    Returns:
        ``(pooled, num_empty)``: ``pooled`` is float32 ``(N, channels * len(statistics))``; an
        image whose region is empty is pooled over the whole image instead, and ``num_empty``
        counts those images (one warning reports the count).

    Taught in ``05_clustering``.
    """
    pooled, num_empty = pool_segments_by_layer(
        extractor,
        images,
        region_masks,
        layers=[layer],
        batch_size=batch_size,
        interpolation=interpolation,
        statistics=statistics,
    )
    return pooled[layer], num_empty


def pool_segments_by_layer(
    extractor: keras.Model,
    images: np.ndarray,
    region_masks: np.ndarray,
    layers: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    interpolation: str = "bilinear",
    statistics: str | Sequence[str] = ("mean",),
) -> tuple[dict[str, np.ndarray], int]:
    """:func:`pool_segments` for several layers at once, with one forward pass over ``images``.

    Args:
        layers: which of the extractor's layers to pool; ``None`` means all of them.
        statistics: as in :func:`pool_segments`.

    Returns:
        ``(pooled, num_empty)``: ``pooled`` maps each layer name to float32
        ``(N, channels * len(statistics))``.

    Taught in ``05_clustering``.
    """
    statistics = check_statistics(statistics)
    names = extractor_layer_names(extractor)
    layers = list(names) if layers is None else [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one of the extractor's layers.")
    unknown = [layer for layer in layers if layer not in names]
    if unknown:
        raise ValueError(f"layer(s) {unknown} are not among the extractor's layers {list(names)}.")
    images = _check_images(images)
    region_masks = np.asarray(region_masks)
    if region_masks.ndim == 4 and region_masks.shape[-1] == 1:
        region_masks = region_masks[..., 0]
    if region_masks.ndim != 3 or region_masks.shape[0] != images.shape[0]:
        raise ValueError(
            f"region_masks must be (N, H, W) with N={images.shape[0]} to match images; got {region_masks.shape}."
        )
    region_masks = region_masks.astype(bool)
    empty = ~region_masks.any(axis=(1, 2))
    # An empty region has no average: fall back to the whole image rather than a NaN.
    region_masks = np.where(empty[:, None, None], True, region_masks)
    size = region_masks.shape[1:]

    pooled: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    for start, maps in _feature_batches(extractor, images, batch_size):
        for layer in layers:
            upsampled = upsample_to(maps[names.index(layer)], size, interpolation)
            for offset, feature_map in enumerate(upsampled):
                pooled[layer].append(masked_pool(feature_map, region_masks[start + offset], statistics))
    num_empty = int(empty.sum())
    if num_empty:
        warnings.warn(
            f"{num_empty} of {images.shape[0]} region masks were empty; those images use their "
            "whole-image average instead.",
            stacklevel=2,
        )
    return {layer: np.stack(vectors) for layer, vectors in pooled.items()}, num_empty


def combine_blocks(blocks: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate feature blocks so that each block weighs the same in Euclidean distances.

    Each block ``(N, width)`` is standardised column by column (a constant column becomes 0) and
    divided by ``sqrt(width)``, so its expected squared norm is 1 whatever its width. Without
    this, a 256-channel bottleneck would outweigh a 16-channel first stage sixteen to one.

    Returns:
        float32 ``(N, sum of widths)``.

    Raises:
        ValueError: no blocks, an empty block, or blocks with different numbers of rows.

    Taught in ``05_clustering``, where it pools every encoder stage into one description of a pet.
    """
    arrays = list(blocks.values()) if isinstance(blocks, Mapping) else list(blocks)
    if not arrays:
        raise ValueError("combine_blocks needs at least one block.")
    arrays = [np.asarray(block, dtype=np.float64) for block in arrays]
    rows = {block.shape[0] if block.ndim == 2 else None for block in arrays}
    if None in rows or len(rows) != 1:
        raise ValueError(
            f"every block must be (N, width) with the same N; got {[block.shape for block in arrays]}."
        )
    if 0 in rows or any(block.shape[1] == 0 for block in arrays):
        raise ValueError(f"combine_blocks got an empty block: shapes {[block.shape for block in arrays]}.")
    scaled = []
    for block in arrays:
        if not np.isfinite(block).all():
            raise ValueError("a block holds NaN or infinite values.")
        mean, spread = block.mean(axis=0), block.std(axis=0)
        # A constant column's spread is round-off (about 1e-17 for 0.1s), not signal: treat it as 0.
        constant = spread <= 1e-9 * (1.0 + np.abs(mean))
        centred = np.where(constant, 0.0, block - mean) / np.where(constant, 1.0, spread)
        scaled.append(centred / np.sqrt(block.shape[1]))
    return np.concatenate(scaled, axis=1).astype(np.float32)


def segment_region(predicted_masks: np.ndarray, region: str = "pet") -> np.ndarray:
    """Boolean ``(N, H, W)`` masks of each image's pet, from predicted class masks.

    Args:
        predicted_masks: integer class masks ``(N, H, W)`` (or ``(N, H, W, 1)``), for example from
            ``metrics.predict_masks``.
        region: a key of :data:`SEGMENT_REGIONS`.

    Taught in ``05_clustering``.
    """
    if region not in SEGMENT_REGIONS:
        raise ValueError(f"region must be one of {list(SEGMENT_REGIONS)}; got {region!r}.")
    masks = np.asarray(predicted_masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.ndim != 3:
        raise ValueError(f"predicted_masks must be (N, H, W); got shape {masks.shape}.")
    return np.isin(masks, SEGMENT_REGIONS[region])


def segment_representations(
    extractor: keras.Model,
    images: np.ndarray,
    region_masks: np.ndarray,
    encoder_stages: Sequence[str],
    statistics: str | Sequence[str] = ("mean",),
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[dict[str, np.ndarray], int]:
    """Every description of whole pets that ``05_clustering`` compares, one row per image.

    * :data:`COLOUR_BASELINE`: mean and spread of Lab colour inside the region, no learned features;
    * one entry per layer of ``extractor``: that layer pooled inside the region with ``statistics``;
    * :data:`ENCODER_REPRESENTATION`: the ``encoder_stages`` pooled the same way and joined with
      :func:`combine_blocks`, so that each stage weighs the same;
    * :data:`INNER_ENCODER_REPRESENTATION`: the same without the first of ``encoder_stages`` and
      the last (the bottleneck), when that leaves any (see :func:`inner_encoder_stages`);
    * each joined representation again with the baseline's colour statistics as one more block
      of the same weight, named with :data:`WITH_COLOUR` appended (``"encoder + colour"``).

    Each is standardised (:func:`combine_blocks`), ready for k-means. ``bench/segments.py`` calls
    this on the train split to choose the notebook's defaults.

    Returns:
        ``(representations, num_empty)``; ``num_empty`` counts images whose region was empty and
        which were pooled over the whole image instead (see :func:`pool_segments_by_layer`).

    Taught in ``05_clustering``.
    """
    names = extractor_layer_names(extractor)
    missing = [stage for stage in encoder_stages if stage not in names]
    if not encoder_stages or missing:
        raise ValueError(
            f"encoder_stages must be some of the extractor's layers {list(names)}; got {encoder_stages!r}."
        )
    pooled, num_empty = pool_segments_by_layer(
        extractor, images, region_masks, batch_size=batch_size, statistics=statistics
    )
    colour = clustering.region_colour_features(images, region_masks)
    representations = {
        COLOUR_BASELINE: combine_blocks([colour]),
        **{layer: combine_blocks([vectors]) for layer, vectors in pooled.items()},
    }
    joined = {ENCODER_REPRESENTATION: list(encoder_stages)}
    inner = inner_encoder_stages(encoder_stages)
    if inner:
        joined[INNER_ENCODER_REPRESENTATION] = inner
    for name, stages in joined.items():
        representations[name] = combine_blocks([pooled[stage] for stage in stages])
    for name, stages in joined.items():
        representations[name + WITH_COLOUR] = combine_blocks([*(pooled[stage] for stage in stages), colour])
    return representations, num_empty


def inner_encoder_stages(encoder_stages: Sequence[str]) -> list[str]:
    """``encoder_stages`` (``enc1`` ... ``encD``, ``bottleneck``) without the first and the last.

    For the ``quick`` U-Net (depth 4) that is ``enc2``, ``enc3``, ``enc4``; for depth 1 it is empty.
    Taught in ``05_clustering``.
    """
    return list(encoder_stages)[1:-1]
