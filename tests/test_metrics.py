"""metrics.py: the confusion matrix, every score worked out by hand, the Keras metric and the losses."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from unet_clustering import config, metrics, unet
from unet_clustering.config import BACKGROUND, BORDER, PET

# Classes: 0 = pet, 1 = background, 2 = border. A 2x3 example; pixel pairs (true, predicted), row by row:
#   (0,0) (0,2) (1,1)
#   (2,0) (1,1) (1,0)
HAND_TRUE = np.array([[0, 0, 1], [2, 1, 1]])
HAND_PRED = np.array([[0, 2, 1], [0, 1, 0]])
# Rows = truth, columns = prediction.
HAND_CM = np.array(
    [
        [1, 0, 1],  # pet: once right, once called border
        [1, 2, 0],  # background: twice right, once called pet
        [1, 0, 0],  # border: called pet
    ]
)


def one_hot_logits(predicted: np.ndarray, num_classes: int = 3, margin: float = 20.0) -> np.ndarray:
    """Logits whose argmax is ``predicted``, with a margin that makes the softmax nearly one-hot."""
    return margin * np.eye(num_classes, dtype="float32")[predicted]


def loss_value(loss, masks, logits) -> float:
    return float(keras.ops.convert_to_numpy(loss(masks, logits)))


# --------------------------------------------------------------------------------------------
# Confusion matrix and scores


def test_confusion_matrix_by_hand() -> None:
    cm = metrics.confusion_matrix(HAND_TRUE, HAND_PRED)
    np.testing.assert_array_equal(cm, HAND_CM)
    assert cm.sum() == HAND_TRUE.size


def test_confusion_matrix_ignores_layout_and_sums_over_a_batch() -> None:
    # Masks with a channel axis against predictions without one: only the pixels count.
    np.testing.assert_array_equal(
        metrics.confusion_matrix(HAND_TRUE[None, :, :, None], HAND_PRED[None]), HAND_CM
    )
    batch_true, batch_pred = np.stack([HAND_TRUE, HAND_TRUE]), np.stack([HAND_PRED, HAND_TRUE])
    # The second image is perfect: 2 pet, 3 background, 1 border on the diagonal.
    np.testing.assert_array_equal(
        metrics.confusion_matrix(batch_true, batch_pred), HAND_CM + np.diag([2, 3, 1])
    )
    np.testing.assert_array_equal(metrics.confusion_matrix(HAND_TRUE.astype(np.uint8), HAND_PRED), HAND_CM)
    # More classes than present: empty rows and columns.
    wide = metrics.confusion_matrix(HAND_TRUE, HAND_PRED, num_classes=4)
    assert wide.shape == (4, 4)
    np.testing.assert_array_equal(wide[:3, :3], HAND_CM)
    assert wide[3].sum() == 0 and wide[:, 3].sum() == 0


def test_confusion_matrix_refuses_different_pixel_counts() -> None:
    with pytest.raises(ValueError, match="6 true pixels but 4 predicted"):
        metrics.confusion_matrix(HAND_TRUE, HAND_PRED[:, :2])


def test_ratio_is_nan_where_the_denominator_is_zero() -> None:
    result = metrics.ratio([1, 2, 0], [4, 0, 0])
    assert result[0] == 0.25 and np.isnan(result[1]) and np.isnan(result[2])
    assert float(metrics.ratio(3, 4)) == 0.75
    assert np.isnan(metrics.ratio(0, 0))


#: The scores that are one number each (the others are one per class).
SCALAR_SCORES = ("fg_iou", "fg_dice", "mean_iou", "pixel_accuracy")


def test_every_score_of_the_hand_example() -> None:
    scores = metrics.segmentation_scores(HAND_CM)
    assert set(scores) == {*SCALAR_SCORES, "iou_per_class", "dice_per_class"}
    # pet:        TP 1, FP = column 0 (1+1+1) - 1 = 2, FN = row 0 (1+0+1) - 1 = 1 -> IoU 1/4
    # background: TP 2, FP = column 1 (0+2+0) - 2 = 0, FN = row 1 (1+2+0) - 2 = 1 -> IoU 2/3
    # border:     TP 0, FP = column 2 (1+0+0) - 0 = 1, FN = row 2 (1+0+0) - 0 = 1 -> IoU 0
    assert scores["iou_per_class"] == pytest.approx({"pet": 1 / 4, "background": 2 / 3, "border": 0.0})
    assert scores["mean_iou"] == pytest.approx((1 / 4 + 2 / 3 + 0) / 3)  # 11/36
    assert scores["pixel_accuracy"] == pytest.approx(3 / 6)  # diagonal 1 + 2 + 0
    assert scores["dice_per_class"]["pet"] == pytest.approx(2 / (2 + 2 + 1))  # 2 TP / (2 TP + FP + FN)
    assert scores["dice_per_class"]["background"] == pytest.approx(4 / (4 + 0 + 1))
    # Foreground = pet + border. TP = cm[0,0] + cm[0,2] + cm[2,0] + cm[2,2] = 3,
    # FP = background called pet or border = cm[1,0] + cm[1,2] = 1, FN = cm[0,1] + cm[2,1] = 0.
    assert scores["fg_iou"] == pytest.approx(3 / 4)
    assert scores["fg_dice"] == pytest.approx(6 / 7)
    for key in SCALAR_SCORES:
        assert type(scores[key]) is float  # plain floats, ready for JSON


def test_foreground_scores_merge_pet_and_border() -> None:
    true = np.array([[PET, PET], [BORDER, BACKGROUND]])
    swapped = np.array([[BORDER, BORDER], [PET, BACKGROUND]])  # pet and border swapped everywhere
    scores = metrics.segmentation_scores(metrics.confusion_matrix(true, swapped))
    assert scores["fg_iou"] == 1.0 and scores["fg_dice"] == 1.0
    assert scores["dice_per_class"]["pet"] == 0.0
    assert scores["iou_per_class"]["pet"] == 0.0 and scores["iou_per_class"]["border"] == 0.0
    assert scores["iou_per_class"]["background"] == 1.0


def test_a_class_absent_from_truth_and_prediction_is_nan_and_left_out_of_the_mean() -> None:
    # No border anywhere. Pairs: (0,0) (1,1) / (1,0) (1,1).
    true, predicted = np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]])
    scores = metrics.segmentation_scores(metrics.confusion_matrix(true, predicted))
    # pet: TP 1, FP 1, FN 0 -> 1/2; background: TP 2, FP 0, FN 1 -> 2/3; border: 0 / 0 -> NaN.
    assert scores["iou_per_class"]["pet"] == pytest.approx(1 / 2)
    assert scores["iou_per_class"]["background"] == pytest.approx(2 / 3)
    assert math.isnan(scores["iou_per_class"]["border"])
    assert scores["mean_iou"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # over the two defined classes
    # A class predicted but absent from the truth is defined, and wrong: IoU 0.
    only_pet = metrics.segmentation_scores(metrics.confusion_matrix([PET, PET], [PET, BORDER]))
    assert only_pet["iou_per_class"]["border"] == 0.0 and math.isnan(only_pet["iou_per_class"]["background"])


def test_scores_of_an_image_without_foreground() -> None:
    scores = metrics.segmentation_scores(metrics.confusion_matrix(np.ones((2, 2)), np.ones((2, 2))))
    assert math.isnan(scores["fg_iou"]) and math.isnan(scores["fg_dice"])
    assert math.isnan(scores["dice_per_class"]["pet"])
    assert scores["pixel_accuracy"] == 1.0 and scores["mean_iou"] == 1.0


def test_an_empty_confusion_matrix_has_no_defined_score() -> None:
    scores = metrics.segmentation_scores(np.zeros((3, 3)))
    for key in SCALAR_SCORES:
        assert math.isnan(scores[key]), key
    assert all(math.isnan(value) for value in scores["iou_per_class"].values())


# --------------------------------------------------------------------------------------------
# The Keras metric


def random_batches(count: int, seed: int = 0, shape: tuple[int, ...] = (2, 6, 6)):
    rng = np.random.default_rng(seed)
    return [
        (rng.integers(0, 3, (*shape, 1)).astype("int32"), rng.normal(size=(*shape, 3)).astype("float32"))
        for _ in range(count)
    ]


def numpy_fg_iou(batches) -> float:
    cm = sum(metrics.confusion_matrix(masks, logits.argmax(axis=-1)) for masks, logits in batches)
    return metrics.segmentation_scores(cm)["fg_iou"]


def test_foreground_iou_metric_equals_the_numpy_score_over_several_batches() -> None:
    batches = random_batches(3)
    metric = metrics.ForegroundIoU()
    assert metric.name == "fg_iou"
    for masks, logits in batches:
        metric.update_state(masks, logits)
    # float32 counts and division in Keras, float64 in numpy: equal to rounding.
    assert float(metric.result()) == pytest.approx(numpy_fg_iou(batches), rel=1e-5)
    metric.reset_state()
    metric.update_state(*batches[1])
    assert float(metric.result()) == pytest.approx(numpy_fg_iou(batches[1:2]), rel=1e-5)


def test_foreground_iou_metric_of_the_hand_example() -> None:
    metric = metrics.ForegroundIoU()
    metric.update_state(HAND_TRUE[None, :, :, None], one_hot_logits(HAND_PRED)[None])
    assert float(metric.result()) == pytest.approx(3 / 4, rel=1e-5)


def test_foreground_iou_metric_leaves_out_pixels_of_weight_zero() -> None:
    (masks, logits), *_ = random_batches(1, seed=1)
    keep = np.random.default_rng(2).random(masks.shape[:3]) < 0.5
    metric = metrics.ForegroundIoU()
    metric.update_state(masks, logits, sample_weight=keep.astype("int32"))
    kept_cm = metrics.confusion_matrix(masks[..., 0][keep], np.argmax(logits, axis=-1)[keep])
    assert float(metric.result()) == pytest.approx(metrics.segmentation_scores(kept_cm)["fg_iou"], rel=1e-5)


def test_foreground_iou_metric_round_trips_through_its_config() -> None:
    metric = metrics.ForegroundIoU(name="val_fg")
    clone = metrics.ForegroundIoU.from_config(metric.get_config())
    assert isinstance(clone, metrics.ForegroundIoU) and clone.name == "val_fg"
    assert keras.saving.get_registered_name(metrics.ForegroundIoU) == "unet_clustering>ForegroundIoU"
    batches = random_batches(1, seed=3)
    for each in (metric, clone):
        each.update_state(*batches[0])
    assert float(clone.result()) == pytest.approx(float(metric.result()), rel=1e-6)


# --------------------------------------------------------------------------------------------
# Losses


def test_losses_are_registered_by_name() -> None:
    assert metrics.LOSSES == {
        "ce": metrics.cross_entropy_loss,
        "dice": metrics.soft_dice_loss,
        "ce+dice": metrics.ce_dice_loss,
    }


def test_cross_entropy_by_hand() -> None:
    # Logits (ln 2, 0, 0) give probabilities (1/2, 1/4, 1/4).
    logits = np.array([[[[math.log(2), 0, 0], [math.log(2), 0, 0]]]], dtype="float32")  # (1, 1, 2, 3)
    labels = np.array([[[[0], [1]]]])  # cross-entropies -ln(1/2) = ln 2 and -ln(1/4) = 2 ln 2
    assert loss_value(metrics.cross_entropy_loss, labels, logits) == pytest.approx(
        1.5 * math.log(2), rel=1e-5
    )


def test_soft_dice_by_hand() -> None:
    # Three pixels labelled 0, 0, 1 and zero logits, so every probability is 1/3. smooth = 1.
    # class 0: overlap 2/3, predicted 1, true 2 -> (4/3 + 1) / (3 + 1) = 7/12
    # class 1: overlap 1/3, predicted 1, true 1 -> (2/3 + 1) / (2 + 1) = 5/9
    # class 2: overlap 0,   predicted 1, true 0 -> (0 + 1) / (1 + 1)   = 1/2
    labels = np.array([[[[0], [0], [1]]]])  # (1, 1, 3, 1)
    logits = np.zeros((1, 1, 3, 3), dtype="float32")
    expected = 1 - (7 / 12 + 5 / 9 + 1 / 2) / 3  # 49/108
    assert loss_value(metrics.soft_dice_loss, labels, logits) == pytest.approx(expected, rel=1e-5)
    # Without smoothing: 1 - (2 * (2/3) / 3 + 2 * (1/3) / 2 + 0 / 1) / 3.
    unsmoothed = metrics.soft_dice_loss(labels, logits, smooth=0.0)
    assert float(keras.ops.convert_to_numpy(unsmoothed)) == pytest.approx(1 - (4 / 9 + 1 / 3) / 3, rel=1e-5)


def test_dice_is_about_zero_for_a_perfect_prediction_and_large_for_a_wrong_one() -> None:
    labels = np.random.default_rng(3).integers(0, 3, (2, 5, 5, 1))
    perfect, wrong = one_hot_logits(labels[..., 0]), one_hot_logits((labels[..., 0] + 1) % 3)
    assert loss_value(metrics.soft_dice_loss, labels, perfect) == pytest.approx(0.0, abs=1e-4)
    assert loss_value(metrics.soft_dice_loss, labels, wrong) > 0.9
    assert loss_value(metrics.cross_entropy_loss, labels, perfect) == pytest.approx(0.0, abs=1e-4)
    assert loss_value(metrics.cross_entropy_loss, labels, wrong) > 10


def test_ce_dice_is_the_sum_of_its_parts() -> None:
    (masks, logits), *_ = random_batches(1, seed=5)
    combined = loss_value(metrics.ce_dice_loss, masks, logits)
    parts = loss_value(metrics.cross_entropy_loss, masks, logits) + loss_value(
        metrics.soft_dice_loss, masks, logits
    )
    assert combined == pytest.approx(parts, rel=1e-5)


@pytest.mark.parametrize("loss_name", sorted(metrics.LOSSES))
def test_each_loss_is_finite_differentiable_and_lowered_by_its_gradient(loss_name: str) -> None:
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the gradient is taken with tf.GradientTape")
    loss = metrics.LOSSES[loss_name]
    keras.utils.set_random_seed(0)
    model = unet.build_unet(image_size=16, base_filters=2, depth=1)
    optimizer = keras.optimizers.Adam(1e-2)
    rng = np.random.default_rng(4)
    images = rng.random((2, 16, 16, 3)).astype("float32")
    # A mask the pixels can explain: the class follows the brightest colour channel.
    masks = images.argmax(axis=-1)[..., None].astype("int32")
    values = []
    for _ in range(6):
        with tf.GradientTape() as tape:
            value = loss(masks, model(images, training=True))
        gradients = tape.gradient(value, model.trainable_variables)
        assert all(gradient is not None for gradient in gradients)
        assert all(np.isfinite(keras.ops.convert_to_numpy(gradient)).all() for gradient in gradients)
        assert any(np.abs(keras.ops.convert_to_numpy(gradient)).max() > 0 for gradient in gradients)
        optimizer.apply(gradients, model.trainable_variables)
        values.append(float(value))
    assert all(math.isfinite(value) for value in values), values
    assert values[-1] < values[0], values


def test_a_model_compiled_with_the_loss_and_metric_reports_both() -> None:
    keras.utils.set_random_seed(1)
    model = unet.build_unet(image_size=16, base_filters=2, depth=1)
    model.compile(
        optimizer="adam", loss=metrics.ce_dice_loss, metrics=[metrics.ForegroundIoU()], jit_compile=False
    )
    images = np.random.default_rng(5).random((2, 16, 16, 3)).astype("float32")
    masks = np.random.default_rng(6).integers(0, 3, (2, 16, 16, 1)).astype("int32")
    results = model.evaluate(images, masks, verbose=0, return_dict=True)
    assert set(results) >= {"loss", "fg_iou"}
    logits = keras.ops.convert_to_numpy(model(images, training=False))
    expected = metrics.segmentation_scores(metrics.confusion_matrix(masks, logits.argmax(axis=-1)))["fg_iou"]
    assert results["fg_iou"] == pytest.approx(expected, rel=1e-5)
    # Two forward passes of different graphs (evaluate's and the direct call): equal up to float32 rounding.
    assert results["loss"] == pytest.approx(loss_value(metrics.ce_dice_loss, masks, logits), rel=1e-4)


def test_foreground_is_every_class_but_the_named_background() -> None:
    # Four classes with the background at index 2: classes 0, 1 and 3 are all foreground.
    classes = config.Classes(("sky", "road", "ground", "car"), background=2)
    true = np.array([0, 1, 2, 3, 2, 2])
    predicted = np.array(
        [1, 0, 2, 3, 3, 2]
    )  # 0 and 1 swapped: still foreground; one ground pixel taken for a car
    scores = metrics.segmentation_scores(metrics.confusion_matrix(true, predicted, 4), classes)
    assert scores["fg_iou"] == pytest.approx(3 / 4)
    assert scores["iou_per_class"]["sky"] == 0.0 and scores["iou_per_class"]["car"] == pytest.approx(1 / 2)
    assert list(scores["dice_per_class"]) == list(classes.names)
    with pytest.raises(ValueError, match="4 classes"):
        metrics.segmentation_scores(np.zeros((3, 3)), classes)
    metric = metrics.ForegroundIoU(background=2)
    metric.update_state(true.reshape(1, 6, 1), np.eye(4)[predicted].reshape(1, 6, 4))
    assert float(metric.result()) == pytest.approx(3 / 4)
    assert metrics.ForegroundIoU.from_config(metric.get_config()).background == 2
