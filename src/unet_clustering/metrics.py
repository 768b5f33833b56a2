"""Segmentation metrics and losses, each defined once.

Taught in ``03_training`` (losses, training metrics, evaluation); the per-image scores find the
worst predictions there too.

Every metric is computed from a confusion matrix ``cm`` of shape ``(C, C)`` whose rows are the
true classes and whose columns are the predicted classes: ``cm[t, p]`` counts the pixels of true
class ``t`` predicted as ``p``. For one class ``c``:

* true positives ``TP = cm[c, c]``;
* false positives ``FP = sum(cm[:, c]) - TP`` (predicted ``c``, truly something else);
* false negatives ``FN = sum(cm[c, :]) - TP`` (truly ``c``, predicted something else).

The formula functions take an ``xp`` argument: ``numpy`` (the default) to evaluate arrays, or
``keras.ops`` so the Keras training metrics below compute their ``result()`` with the very same
code from a confusion matrix held in a Keras variable. A quantity whose denominator is zero (for
instance the IoU of a class absent from both the truth and the prediction) is undefined and comes
out as NaN; averages skip such classes.

Sections: confusion matrices, formulas, dataset evaluation, Keras metrics, losses.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from unet_clustering.config import BACKGROUND, CLASS_NAMES, NUM_CLASSES, PET

#: Guards divisions whose zero-denominator case is replaced by NaN (or by 0 in the losses).
_TINY = 1e-12

# ============================================================================================
# Confusion matrices


def confusion_matrix(y_true, y_pred, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Count pixels by (true class, predicted class): an int64 array of shape ``(C, C)``.

    ``cm[t, p]`` is the number of pixels whose true class is ``t`` and predicted class is ``p``
    (rows = truth, columns = prediction). ``y_true`` holds class indices, shape ``(B, H, W)``,
    ``(B, H, W, 1)`` or a single ``(H, W)`` mask. ``y_pred`` holds either class indices of the
    same shape, or scores per class (logits or probabilities) with one more trailing axis of size
    ``num_classes``, which are turned into class indices by ``argmax``.

    Each pixel gets the code ``t * C + p`` and ``np.bincount`` counts the codes in one pass.

    Taught in ``03_training``.
    """
    true_labels, predicted_labels = _labels_pair(y_true, y_pred, num_classes)
    codes = true_labels.ravel() * num_classes + predicted_labels.ravel()
    return np.bincount(codes, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_image_confusion_matrices(y_true, y_pred, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """One confusion matrix per image: an int64 array of shape ``(B, C, C)``.

    Same inputs as :func:`confusion_matrix`, with a leading batch axis. Taught in ``03_training``.
    """
    true_labels, predicted_labels = _labels_pair(y_true, y_pred, num_classes)
    if true_labels.ndim < 2:
        raise ValueError(
            f"per-image confusion matrices need a batch axis; got masks of shape {true_labels.shape}."
        )
    batch = true_labels.shape[0]
    # The image index is part of the code, so one bincount fills every image's matrix.
    image_index = np.arange(batch).reshape((batch,) + (1,) * (true_labels.ndim - 1))
    codes = (image_index * num_classes + true_labels) * num_classes + predicted_labels
    counts = np.bincount(codes.ravel(), minlength=batch * num_classes * num_classes)
    return counts.reshape(batch, num_classes, num_classes)


def _drop_channel_axis(mask: np.ndarray) -> np.ndarray:
    """``(..., 1)`` masks become ``(...)``; masks without a channel axis are returned as they are."""
    return mask[..., 0] if mask.ndim >= 1 and mask.shape[-1] == 1 else mask


def _labels_pair(y_true, y_pred, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``(true, predicted)`` as int64 class-index arrays of equal shape."""
    _check_num_classes(num_classes)
    true_labels = _drop_channel_axis(np.asarray(y_true))
    predicted = np.asarray(y_pred)
    if predicted.ndim == true_labels.ndim + 1 and predicted.shape[-1] == num_classes:
        predicted = np.argmax(predicted, axis=-1)
    else:
        predicted = _drop_channel_axis(predicted)
    if predicted.shape != true_labels.shape:
        raise ValueError(
            f"y_pred of shape {np.shape(y_pred)} does not match y_true of shape {np.shape(y_true)}: give class "
            f"indices of the same shape, or scores with a trailing axis of size num_classes={num_classes}."
        )
    return (
        _as_class_indices("y_true", true_labels, num_classes),
        _as_class_indices("y_pred", predicted, num_classes),
    )


def _as_class_indices(argument: str, labels: np.ndarray, num_classes: int) -> np.ndarray:
    if labels.size == 0:
        return labels.astype(np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError(
                f"{argument} must hold whole class indices; got values such as {labels.ravel()[0]!r}."
            )
    low, high = labels.min(), labels.max()
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{argument} holds class indices from {low} to {high}, but they must lie in 0..{num_classes - 1} "
            f"(num_classes={num_classes})."
        )
    return labels.astype(np.int64)


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2; got num_classes={num_classes!r}.")


# ============================================================================================
# Formulas (numpy or keras.ops, chosen by ``xp``)


def iou_per_class(cm, xp=np):
    """Intersection over union of each class: ``IoU_c = TP / (TP + FP + FN)``, shape ``(C,)``.

    NaN for a class that appears neither in the truth nor in the prediction. Taught in
    ``03_training``.
    """
    cm = _as_matrix(cm, xp)
    true_positive, false_positive, false_negative = _class_counts(cm, xp)
    return _ratio(true_positive, true_positive + false_positive + false_negative, xp)


def mean_iou(cm, xp=np):
    """Mean of :func:`iou_per_class` over the classes where it is defined (NaN ones are skipped).

    ``mIoU = (1 / |D|) * sum_{c in D} IoU_c`` with ``D`` the classes present in the truth or the
    prediction. Taught in ``03_training``.
    """
    cm = _as_matrix(cm, xp)
    true_positive, false_positive, false_negative = _class_counts(cm, xp)
    union = true_positive + false_positive + false_negative
    defined = union > 0
    iou = _ratio(true_positive, union, xp)
    total = xp.sum(xp.where(defined, iou, 0.0))
    return _finish(_ratio(total, xp.sum(xp.where(defined, 1.0, 0.0)), xp), xp)


def pixel_accuracy(cm, xp=np):
    """Fraction of pixels whose class is right: ``sum_c cm[c, c] / sum(cm)``. Taught in ``03_training``."""
    cm = _as_matrix(cm, xp)
    return _finish(_ratio(xp.sum(xp.diagonal(cm)), xp.sum(cm), xp), xp)


def class_dice(cm, class_index: int, xp=np):
    """Dice coefficient (F1 score) of one class: ``2 TP / (2 TP + FP + FN)``. Taught in ``03_training``."""
    cm = _as_matrix(cm, xp)
    true_positive, false_positive, false_negative = _class_counts(cm, xp)
    return _finish(
        _ratio(
            2 * true_positive[class_index],
            2 * true_positive[class_index] + false_positive[class_index] + false_negative[class_index],
            xp,
        ),
        xp,
    )


def pet_dice(cm, xp=np):
    """Dice of the pet class alone (the border class counts as "not pet"). Taught in ``03_training``."""
    return class_dice(cm, PET, xp=xp)


def foreground_counts(cm, xp=np, background: int = BACKGROUND):
    """``(TP, FP, FN)`` of the binary problem foreground (pet + border) vs background.

    The ``C x C`` matrix is collapsed to ``2 x 2``: ``TP`` sums ``cm[t, p]`` over foreground
    ``t`` and ``p`` (so a pet pixel predicted as border still counts as a hit), ``FP`` sums
    ``cm[background, p]`` and ``FN`` sums ``cm[t, background]`` over foreground ``t``, ``p``.
    Taught in ``03_training``.
    """
    cm = _as_matrix(cm, xp)
    foreground = [index for index in range(cm.shape[0]) if index != background]
    true_positive = sum(cm[true, predicted] for true in foreground for predicted in foreground)
    false_positive = sum(cm[background, predicted] for predicted in foreground)
    false_negative = sum(cm[true, background] for true in foreground)
    return true_positive, false_positive, false_negative


def foreground_iou(cm, xp=np):
    """IoU of foreground (pet + border) vs background: ``TP / (TP + FP + FN)`` of the collapsed matrix.

    This is the headline number of the project: how well the model separates the animal from
    the rest. Taught in ``03_training``.
    """
    true_positive, false_positive, false_negative = foreground_counts(cm, xp)
    return _finish(_ratio(true_positive, true_positive + false_positive + false_negative, xp), xp)


def foreground_dice(cm, xp=np):
    """Dice of foreground (pet + border) vs background: ``2 TP / (2 TP + FP + FN)``. Taught in ``03_training``."""
    true_positive, false_positive, false_negative = foreground_counts(cm, xp)
    return _finish(_ratio(2 * true_positive, 2 * true_positive + false_positive + false_negative, xp), xp)


def summarize(cm, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Every metric of a numpy confusion matrix, as plain Python numbers (ready for JSON).

    Keys: ``fg_iou``, ``fg_dice``, ``pet_dice``, ``mean_iou``, ``pixel_accuracy`` and
    ``iou_per_class`` (a dict class name -> IoU). Taught in ``03_training``.
    """
    cm = _as_matrix(cm, np)
    if class_names is None:
        class_names = (
            CLASS_NAMES if cm.shape[0] == len(CLASS_NAMES) else [f"class_{i}" for i in range(cm.shape[0])]
        )
    return {
        "fg_iou": foreground_iou(cm),
        "fg_dice": foreground_dice(cm),
        "pet_dice": pet_dice(cm),
        "mean_iou": mean_iou(cm),
        "pixel_accuracy": pixel_accuracy(cm),
        "iou_per_class": {
            name: float(value) for name, value in zip(class_names, iou_per_class(cm), strict=True)
        },
    }


def _class_counts(cm, xp):
    """Per-class ``(TP, FP, FN)`` vectors of a confusion matrix (rows = truth)."""
    true_positive = xp.diagonal(cm)
    false_positive = xp.sum(cm, axis=0) - true_positive
    false_negative = xp.sum(cm, axis=1) - true_positive
    return true_positive, false_positive, false_negative


def _ratio(numerator, denominator, xp):
    """``numerator / denominator``, NaN where the denominator is 0 (the quantity is undefined)."""
    return xp.where(denominator > 0, numerator / xp.maximum(denominator, _TINY), math.nan)


def _as_matrix(cm, xp):
    if xp is not np:
        return cm
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be square (C, C); got shape {cm.shape}.")
    return cm


def _finish(value, xp):
    # numpy results become Python floats; keras.ops results stay tensors.
    return float(value) if xp is np else value


# ============================================================================================
# Dataset evaluation


def predict_probabilities(model, images, batch_size: int = 32, tta_flip: bool = False) -> np.ndarray:
    """Class probabilities ``(N, H, W, C)`` (softmax of the logits) for images ``(N, H, W, 3)``.

    With ``tta_flip`` (test-time augmentation), each image and its left-right mirror are both
    predicted; the mirror's probabilities are flipped back and the two are averaged.
    Taught in ``03_training``.
    """
    images = np.asarray(images)
    _check_batch_size(batch_size)
    parts = [
        _predict_batch(model, images[start : start + batch_size], tta_flip)
        for start in range(0, len(images), batch_size)
    ]
    if not parts:
        raise ValueError("predict_probabilities got no images.")
    return np.concatenate(parts)


def predict_masks(model, images, batch_size: int = 32, tta_flip: bool = False) -> np.ndarray:
    """Predicted class indices, an int32 array ``(N, H, W)``, for images ``(N, H, W, 3)`` in [0, 1].

    Taught in ``03_training``.
    """
    return np.argmax(predict_probabilities(model, images, batch_size, tta_flip), axis=-1).astype(np.int32)


def evaluate(
    model,
    data,
    num_classes: int = NUM_CLASSES,
    tta_flip: bool = False,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Evaluate ``model`` on a whole dataset with one confusion matrix summed over all batches.

    ``data`` is either a pair ``(images, masks)`` of arrays (batched here by ``batch_size``), or
    any iterable of ``(images, masks, ...)`` batches, such as a batched ``tf.data.Dataset`` (extra
    elements such as sample weights are ignored). Summing counts first and dividing once gives the
    dataset IoU, which is not the mean of per-batch IoUs.

    Returns :func:`summarize` of the summed matrix plus ``confusion_matrix`` (nested lists of
    ints), ``num_images`` and ``tta_flip``. Taught in ``03_training``.
    """
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    num_images = 0
    for images, masks in _batches(data, batch_size):
        probabilities = _predict_batch(model, images, tta_flip)
        cm += confusion_matrix(masks, probabilities, num_classes)
        num_images += len(images)
    if num_images == 0:
        raise ValueError("evaluate got no batches: is the dataset empty?")
    return {**summarize(cm), "confusion_matrix": cm.tolist(), "num_images": num_images, "tta_flip": tta_flip}


def image_scores(y_true, y_pred, num_classes: int = NUM_CLASSES) -> list[dict[str, Any]]:
    """:func:`summarize` of each image separately, with its ``index`` in the batch.

    ``y_true`` and ``y_pred`` as in :func:`per_image_confusion_matrices`. Taught in ``03_training``.
    """
    matrices = per_image_confusion_matrices(y_true, y_pred, num_classes)
    return [{"index": index, **summarize(matrix)} for index, matrix in enumerate(matrices)]


def per_image_scores(
    model, images, masks, batch_size: int = 32, tta_flip: bool = False, num_classes: int = NUM_CLASSES
) -> list[dict[str, Any]]:
    """Predict ``images`` and score each one against its mask (see :func:`image_scores`).

    Pass the result to :func:`worst_images` to find the images the model gets most wrong.
    Taught in ``03_training``.
    """
    predicted = predict_masks(model, images, batch_size=batch_size, tta_flip=tta_flip)
    return image_scores(masks, predicted, num_classes)


def worst_images(scores: list[dict[str, Any]], count: int = 5, key: str = "fg_iou") -> list[dict[str, Any]]:
    """The ``count`` scores with the lowest ``key`` (NaN, i.e. undefined, sorts last). Taught in ``03_training``."""
    return sorted(scores, key=lambda score: (math.isnan(score[key]), score[key]))[:count]


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got batch_size={batch_size!r}.")


def _batches(data, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield numpy ``(images, masks)`` batches from a pair of arrays or an iterable of batches."""
    is_array_pair = (
        isinstance(data, (tuple, list)) and len(data) == 2 and all(hasattr(part, "shape") for part in data)
    )
    if is_array_pair:
        _check_batch_size(batch_size)
        images, masks = (np.asarray(part) for part in data)
        if len(images) != len(masks):
            raise ValueError(f"images and masks differ in length: {len(images)} images, {len(masks)} masks.")
        for start in range(0, len(images), batch_size):
            yield images[start : start + batch_size], masks[start : start + batch_size]
        return
    if not isinstance(data, Iterable):
        raise ValueError(
            f"data must be a pair (images, masks) or an iterable of batches; got {type(data).__name__}."
        )
    for batch in data:
        # np.asarray also reads TensorFlow / JAX tensors, so no framework import is needed here.
        yield np.asarray(batch[0]), np.asarray(batch[1])


def _predict_logits(model, images: np.ndarray) -> np.ndarray:
    # A direct call, not predict_on_batch: under a tf.distribute strategy the latter returns one
    # copy of the batch per replica.
    return np.asarray(ops.convert_to_numpy(model(images, training=False)))


def _softmax(logits: np.ndarray) -> np.ndarray:
    # Subtracting the maximum avoids overflow in exp and does not change the result.
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _predict_batch(model, images: np.ndarray, tta_flip: bool) -> np.ndarray:
    """Softmax probabilities of one batch, optionally averaged with the mirrored prediction."""
    images = np.asarray(images, dtype=np.float32)
    if not tta_flip:
        return _softmax(_predict_logits(model, images).astype(np.float64))
    # One call on [images, mirrored images] instead of two calls.
    mirrored = images[:, :, ::-1]
    probabilities = _softmax(_predict_logits(model, np.concatenate([images, mirrored])).astype(np.float64))
    count = len(images)
    return (probabilities[:count] + probabilities[count:, :, ::-1]) / 2


# ============================================================================================
# Keras metrics for training (backend-agnostic)


@keras.saving.register_keras_serializable(package="unet_clustering")
class ConfusionMatrixMetric(keras.metrics.Metric):
    """A Keras metric that accumulates a ``(C, C)`` confusion matrix over batches.

    ``update_state(y_true, y_pred, sample_weight=None)`` takes masks ``(B, H, W, 1)`` or
    ``(B, H, W)`` of class indices and logits ``(B, H, W, C)`` (argmax is taken inside). With
    ``sample_weight`` (Keras passes it only to ``weighted_metrics`` in ``compile``), each pixel
    adds its weight instead of 1. Subclasses set ``formula``, one of this module's formula
    functions, which ``result()`` evaluates with ``xp=keras.ops``: the numbers logged during
    training are computed by the same code as :func:`evaluate`.

    Counts are kept in float32, which holds integers exactly up to 2**24 per cell; beyond that
    the relative rounding error stays below 1e-7. Taught in ``03_training``.
    """

    formula = None
    default_name = "confusion_matrix"

    def __init__(self, num_classes: int = NUM_CLASSES, name: str | None = None, dtype=None):
        super().__init__(name=name or self.default_name, dtype=dtype)
        _check_num_classes(num_classes)
        self.num_classes = int(num_classes)
        self.confusion_counts = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype="float32",
            name="confusion_counts",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        true_labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        predicted_labels = ops.reshape(ops.argmax(y_pred, axis=-1), (-1,))
        true_one_hot = ops.one_hot(true_labels, self.num_classes, dtype="float32")
        predicted_one_hot = ops.one_hot(predicted_labels, self.num_classes, dtype="float32")
        if sample_weight is not None:
            true_one_hot = true_one_hot * ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1))
        # Pixel n adds its weight to cell (true_n, predicted_n). A broadcast product rather than a
        # matrix product, because GPUs may round float32 matrix products to 10-bit mantissas (TF32).
        counts = ops.sum(true_one_hot[:, :, None] * predicted_one_hot[:, None, :], axis=0)
        self.confusion_counts.assign(self.confusion_counts + counts)

    def result(self):
        if type(self).formula is None:
            return ops.convert_to_tensor(self.confusion_counts)
        return type(self).formula(ops.convert_to_tensor(self.confusion_counts), xp=ops)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="unet_clustering")
class ForegroundIoU(ConfusionMatrixMetric):
    """Training-time :func:`foreground_iou` (logged as ``fg_iou``). Taught in ``03_training``."""

    formula = staticmethod(foreground_iou)
    default_name = "fg_iou"


@keras.saving.register_keras_serializable(package="unet_clustering")
class ForegroundDice(ConfusionMatrixMetric):
    """Training-time :func:`foreground_dice` (logged as ``fg_dice``). Taught in ``03_training``."""

    formula = staticmethod(foreground_dice)
    default_name = "fg_dice"


@keras.saving.register_keras_serializable(package="unet_clustering")
class MeanIoU(ConfusionMatrixMetric):
    """Training-time :func:`mean_iou` over all classes (logged as ``mean_iou``). Taught in ``03_training``."""

    formula = staticmethod(mean_iou)
    default_name = "mean_iou"


@keras.saving.register_keras_serializable(package="unet_clustering")
class PetDice(ConfusionMatrixMetric):
    """Training-time :func:`pet_dice` (logged as ``pet_dice``). Taught in ``03_training``."""

    formula = staticmethod(pet_dice)
    default_name = "pet_dice"


@keras.saving.register_keras_serializable(package="unet_clustering")
class PixelAccuracy(ConfusionMatrixMetric):
    """Training-time :func:`pixel_accuracy` (logged as ``pixel_accuracy``). Taught in ``03_training``."""

    formula = staticmethod(pixel_accuracy)
    default_name = "pixel_accuracy"


def training_metrics(num_classes: int = NUM_CLASSES) -> list[ConfusionMatrixMetric]:
    """Fresh metric instances for ``model.compile(metrics=...)``. Taught in ``03_training``."""
    return [
        ForegroundIoU(num_classes),
        ForegroundDice(num_classes),
        MeanIoU(num_classes),
        PetDice(num_classes),
        PixelAccuracy(num_classes),
    ]


# ============================================================================================
# Losses


class _WeightedPixelLoss(keras.losses.Loss):
    """Base of the losses below: logits ``(B, H, W, C)``, masks ``(B, H, W, 1)`` or ``(B, H, W)``.

    Per-pixel ``sample_weight`` of shape ``(B, H, W)`` (or ``(B, H, W, 1)``), as Keras ``fit``
    passes it, enters the sums of the loss itself, so a pixel of weight 0 is ignored entirely.
    """

    def __call__(self, y_true, y_pred, sample_weight=None):
        labels = ops.convert_to_tensor(y_true)
        if len(labels.shape) == len(y_pred.shape):
            labels = ops.squeeze(labels, axis=-1)
        labels = ops.cast(labels, "float32")
        if sample_weight is None:
            weights = ops.ones_like(labels)
        else:
            weights = ops.reshape(ops.cast(sample_weight, "float32"), ops.shape(labels))
        # The weights travel to call() beside the labels, because Keras' own weighting multiplies
        # a per-pixel loss, and a Dice loss has no per-pixel value. Going through Loss.__call__
        # keeps Keras' handling of dtypes and of multi-replica training.
        return super().__call__(ops.stack([labels, weights], axis=-1), y_pred)

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true[..., 0], "int32")
        weights = y_true[..., 1]
        logits = ops.cast(y_pred, "float32")
        # Shape (1,) rather than a scalar so Keras still applies its reduction (a no-op here).
        return ops.reshape(self.pixel_loss(labels, weights, logits), (1,))

    def pixel_loss(self, labels, weights, logits):
        raise NotImplementedError


def weighted_cross_entropy(labels, weights, logits):
    """Weighted mean cross-entropy from logits: ``sum_n w_n * (-log softmax(z_n)[y_n]) / sum_n w_n``.

    ``labels`` ``(B, H, W)`` int, ``weights`` ``(B, H, W)``, ``logits`` ``(B, H, W, C)``; works
    on any Keras backend. Dividing by the weight sum (not the pixel count) makes pixels of weight
    0 vanish from the loss. Taught in ``03_training``.
    """
    per_pixel = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return ops.sum(weights * per_pixel) / ops.maximum(ops.sum(weights), _TINY)


def soft_dice_loss(labels, weights, logits, smooth: float = 1.0):
    """Soft Dice loss: ``1 - mean_c (2 I_c + s) / (P_c + T_c + s)`` over the classes ``c``.

    With ``p = softmax(logits)``, ``y`` the one-hot labels and ``w`` the pixel weights, summed
    over the whole batch: ``I_c = sum w p_c y_c``, ``P_c = sum w p_c``, ``T_c = sum w y_c``. The
    smoothing ``s`` keeps a class absent from both truth and prediction at Dice 1 instead of 0/0.
    Unlike cross-entropy it looks at each class's overlap as a whole, so small classes (the thin
    border) weigh as much as large ones. Taught in ``03_training``.
    """
    num_classes = logits.shape[-1]
    probabilities = ops.softmax(logits, axis=-1)
    one_hot = ops.one_hot(labels, num_classes, dtype="float32")
    pixel_weights = ops.expand_dims(weights, -1)
    summed_axes = tuple(range(len(logits.shape) - 1))
    intersection = ops.sum(pixel_weights * probabilities * one_hot, axis=summed_axes)
    total = ops.sum(pixel_weights * (probabilities + one_hot), axis=summed_axes)
    dice = (2.0 * intersection + smooth) / (total + smooth)
    return 1.0 - ops.mean(dice)


@keras.saving.register_keras_serializable(package="unet_clustering")
class SoftDiceLoss(_WeightedPixelLoss):
    """:func:`soft_dice_loss` as a Keras loss, from logits. Taught in ``03_training``."""

    def __init__(self, smooth: float = 1.0, name: str = "soft_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        if not smooth > 0:
            raise ValueError(f"smooth must be > 0; got smooth={smooth!r}.")
        self.smooth = float(smooth)

    def pixel_loss(self, labels, weights, logits):
        return soft_dice_loss(labels, weights, logits, self.smooth)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="unet_clustering")
class CombinedLoss(_WeightedPixelLoss):
    """``cross_entropy_weight * weighted_cross_entropy + dice_weight * soft_dice_loss``, from logits.

    Cross-entropy gives smooth, per-pixel gradients; Dice directly rewards overlap. A weight of 0
    skips that term. Taught in ``03_training``.
    """

    def __init__(
        self,
        cross_entropy_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        name: str = "ce_dice",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        for argument, value in (("cross_entropy_weight", cross_entropy_weight), ("dice_weight", dice_weight)):
            if not value >= 0:
                raise ValueError(f"{argument} must be >= 0; got {argument}={value!r}.")
        if cross_entropy_weight == 0 and dice_weight == 0:
            raise ValueError(
                "cross_entropy_weight and dice_weight cannot both be 0: the loss would be constant."
            )
        if not smooth > 0:
            raise ValueError(f"smooth must be > 0; got smooth={smooth!r}.")
        self.cross_entropy_weight = float(cross_entropy_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)

    def pixel_loss(self, labels, weights, logits):
        total = 0.0
        if self.cross_entropy_weight:
            total = total + self.cross_entropy_weight * weighted_cross_entropy(labels, weights, logits)
        if self.dice_weight:
            total = total + self.dice_weight * soft_dice_loss(labels, weights, logits, self.smooth)
        return total

    def get_config(self):
        return {
            **super().get_config(),
            "cross_entropy_weight": self.cross_entropy_weight,
            "dice_weight": self.dice_weight,
            "smooth": self.smooth,
        }


LOSS_KINDS: tuple[str, ...] = ("ce", "dice", "ce+dice")


def make_loss(kind: str = "ce", dice_weight: float = 1.0, smooth: float = 1.0) -> keras.losses.Loss:
    """The loss for ``model.compile``: ``"ce"``, ``"dice"`` or ``"ce+dice"`` (CE + dice_weight * Dice).

    All take logits and masks ``(B, H, W, 1)`` and honour per-pixel ``sample_weight``
    ``(B, H, W)`` (see :func:`class_weight_map`). Taught in ``03_training``.
    """
    if kind == "ce":
        return CombinedLoss(cross_entropy_weight=1.0, dice_weight=0.0, smooth=smooth, name="ce")
    if kind == "dice":
        return SoftDiceLoss(smooth=smooth)
    if kind == "ce+dice":
        return CombinedLoss(cross_entropy_weight=1.0, dice_weight=dice_weight, smooth=smooth, name="ce_dice")
    raise ValueError(f"kind must be one of {list(LOSS_KINDS)}; got kind={kind!r}.")


def _class_weight_vector(class_weights, num_classes: int) -> np.ndarray:
    """Accept a sequence of C weights or a dict keyed by class index or class name."""
    if isinstance(class_weights, dict):
        vector = np.ones(num_classes, dtype=np.float32)
        for key, value in class_weights.items():
            index = CLASS_NAMES.index(key) if isinstance(key, str) and key in CLASS_NAMES else key
            if not isinstance(index, numbers.Integral) or not 0 <= index < num_classes:
                raise ValueError(
                    f"class_weights key {key!r} is neither a class index 0..{num_classes - 1} nor one of {list(CLASS_NAMES)}."
                )
            vector[index] = value
    else:
        vector = np.asarray(class_weights, dtype=np.float32)
        if vector.shape != (num_classes,):
            raise ValueError(
                f"class_weights must hold {num_classes} weights (one per class); got shape {vector.shape}."
            )
    if np.any(vector < 0) or not np.all(np.isfinite(vector)):
        raise ValueError(f"class_weights must be finite and >= 0; got {vector.tolist()}.")
    return vector


def pixel_weights(masks, class_weights, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Per-pixel weights ``w[n] = class_weights[mask[n]]`` as a float32 numpy array.

    ``masks`` ``(B, H, W)`` or ``(B, H, W, 1)`` gives weights ``(B, H, W)``. ``class_weights`` is a
    sequence of ``num_classes`` numbers or a dict keyed by class index or name (missing classes
    get 1). Keras ``fit`` passes such weights as ``sample_weight`` of shape ``(B, H, W)``, and the
    losses of this module use them inside their sums. Taught in ``03_training``.
    """
    vector = _class_weight_vector(class_weights, num_classes)
    labels = _as_class_indices("masks", _drop_channel_axis(np.asarray(masks)), num_classes)
    return vector[labels]


def class_weight_map(mask, class_weights, num_classes: int = NUM_CLASSES):
    """:func:`pixel_weights` with ``keras.ops``, usable inside a ``tf.data`` map function.

    ``mask`` ``(..., H, W, 1)`` or ``(..., H, W)`` of class indices gives a backend float32
    tensor ``(..., H, W)``. Taught in ``03_training``.
    """
    vector = ops.convert_to_tensor(_class_weight_vector(class_weights, num_classes))
    labels = ops.convert_to_tensor(mask)
    if len(labels.shape) >= 1 and labels.shape[-1] == 1:
        labels = ops.squeeze(labels, axis=-1)
    return ops.take(vector, ops.cast(labels, "int32"))


def inverse_frequency_weights(masks, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Class weights ``w_c = N / (C * n_c)`` from pixel counts ``n_c`` (``N`` pixels, ``C`` classes).

    A class covering a third of the pixels gets weight 1; rarer classes (the border) get more.
    A class absent from ``masks`` gets weight 0. Taught in ``03_training``.
    """
    labels = _as_class_indices("masks", np.asarray(masks), num_classes)
    counts = np.bincount(labels.ravel(), minlength=num_classes).astype(np.float64)
    weights = np.divide(counts.sum(), num_classes * counts, out=np.zeros(num_classes), where=counts > 0)
    return weights.astype(np.float32)
