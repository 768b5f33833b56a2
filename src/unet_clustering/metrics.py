"""The loss and the segmentation metrics, each defined once.

Taught in ``03_training``, where the code below is written and explained. Every metric comes from a
confusion matrix ``cm`` whose rows are the true classes and whose columns the predicted ones. The
losses and the training metric use ``keras.ops`` only, so they run under any Keras backend.
"""

import keras
import numpy as np

from unet_clustering import config


# ---- Exported from notebooks/03_training.ipynb: edit the notebook, then run `make export`. ----
def cross_entropy_loss(y_true, y_pred):
    """Mean cross-entropy over every pixel, from logits; masks are (batch, H, W, 1) class indices."""
    labels = keras.ops.squeeze(y_true, axis=-1)
    return keras.ops.mean(keras.ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=True))


def soft_dice_loss(y_true, y_pred, smooth=1.0):
    """1 - mean over the classes of (2 * overlap + s) / (predicted + true + s), summed over the whole batch."""
    probabilities = keras.ops.softmax(y_pred, axis=-1)
    labels = keras.ops.cast(keras.ops.squeeze(y_true, axis=-1), "int32")
    one_hot = keras.ops.one_hot(labels, y_pred.shape[-1], dtype=probabilities.dtype)
    pixels = tuple(range(len(y_pred.shape) - 1))  # every axis but the classes
    overlap = keras.ops.sum(probabilities * one_hot, axis=pixels)
    total = keras.ops.sum(probabilities + one_hot, axis=pixels)
    return 1.0 - keras.ops.mean((2.0 * overlap + smooth) / (total + smooth))


def ce_dice_loss(y_true, y_pred):
    """Cross-entropy plus soft Dice: per-pixel gradients, and each class's overlap counted equally."""
    return cross_entropy_loss(y_true, y_pred) + soft_dice_loss(y_true, y_pred)


LOSSES = {"ce": cross_entropy_loss, "dice": soft_dice_loss, "ce+dice": ce_dice_loss}


def confusion_matrix(true_masks, predicted_masks, num_classes=None):
    """cm[t, p]: the number of pixels of true class t predicted as class p (of `num_classes`, default: the data's)."""
    num_classes = num_classes or config.dataset_classes().num_classes
    true_masks, predicted_masks = np.asarray(true_masks).ravel(), np.asarray(predicted_masks).ravel()
    if true_masks.size != predicted_masks.size:
        raise ValueError(f"{true_masks.size} true pixels but {predicted_masks.size} predicted ones.")
    for labels in (true_masks, predicted_masks):
        if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
            raise ValueError(
                f"class indices must lie in 0..{num_classes - 1}; found {labels.min()}..{labels.max()}."
            )
    codes = true_masks.astype(np.int64) * num_classes + predicted_masks.astype(np.int64)
    return np.bincount(codes, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def ratio(numerator, denominator):
    """numerator / denominator, NaN where the denominator is 0 (the quantity is undefined)."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, float), np.asarray(denominator, float))
    return np.divide(numerator, denominator, out=np.full(numerator.shape, np.nan), where=denominator > 0)


def segmentation_scores(cm, classes=None):
    """Every metric of the project from one confusion matrix (rows: truth, columns: prediction) of `classes`."""
    classes = classes or config.dataset_classes()
    cm = np.asarray(cm, dtype=np.float64)
    if cm.shape != (classes.num_classes, classes.num_classes):
        raise ValueError(
            f"a confusion matrix of {classes.num_classes} classes is {classes.num_classes} x {classes.num_classes}; got {cm.shape}."
        )
    true_positive = np.diag(cm)
    false_positive = cm.sum(axis=0) - true_positive
    false_negative = cm.sum(axis=1) - true_positive
    iou = ratio(true_positive, true_positive + false_positive + false_negative)
    dice = ratio(2 * true_positive, 2 * true_positive + false_positive + false_negative)
    foreground, background = list(classes.foreground), classes.background
    fg_tp = cm[np.ix_(foreground, foreground)].sum()
    fg_fp, fg_fn = cm[background, foreground].sum(), cm[foreground, background].sum()
    return {
        "fg_iou": float(ratio(fg_tp, fg_tp + fg_fp + fg_fn)),
        "fg_dice": float(ratio(2 * fg_tp, 2 * fg_tp + fg_fp + fg_fn)),
        "mean_iou": float(np.nanmean(iou)) if np.isfinite(iou).any() else np.nan,
        "pixel_accuracy": float(ratio(true_positive.sum(), cm.sum())),
        "iou_per_class": {name: float(value) for name, value in zip(classes.names, iou, strict=True)},
        "dice_per_class": {name: float(value) for name, value in zip(classes.names, dice, strict=True)},
    }


@keras.saving.register_keras_serializable(package="unet_clustering")
class ForegroundIoU(keras.metrics.IoU):
    """Foreground IoU (every class but `background` against it) from logits, over every pixel seen."""

    def __init__(self, background=None, name="fg_iou", dtype="float32"):
        super().__init__(num_classes=2, target_class_ids=[1], name=name, dtype=dtype)
        self.background = config.dataset_classes().background if background is None else int(background)

    def update_state(self, y_true, y_pred, sample_weight=None):
        true_foreground = keras.ops.not_equal(keras.ops.squeeze(y_true, axis=-1), self.background)
        predicted_foreground = keras.ops.not_equal(keras.ops.argmax(y_pred, axis=-1), self.background)
        return super().update_state(
            keras.ops.cast(true_foreground, "int32"),
            keras.ops.cast(predicted_foreground, "int32"),
            sample_weight,
        )

    def get_config(self):
        return {"background": self.background, "name": self.name, "dtype": self.dtype}


# ---- End of the code exported from notebooks/03_training.ipynb. ----
