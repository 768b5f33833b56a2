"""Tests of the metrics and losses against values worked out by hand."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from unet_clustering import metrics, unet
from unet_clustering.config import BACKGROUND, BORDER, PET

# Classes: 0 = pet, 1 = background, 2 = border.
# A 2x3 example used throughout. Pixel pairs (true, predicted), row by row:
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


def _hand_logits(predicted: np.ndarray, num_classes: int = 3) -> np.ndarray:
    """Logits whose argmax is ``predicted`` (a clear margin, so softmax is nearly one-hot)."""
    return 20.0 * np.eye(num_classes, dtype="float32")[predicted]


# --------------------------------------------------------------------------------------------
# Confusion matrices


def test_confusion_matrix_by_hand():
    np.testing.assert_array_equal(metrics.confusion_matrix(HAND_TRUE, HAND_PRED), HAND_CM)
    assert metrics.confusion_matrix(HAND_TRUE, HAND_PRED).sum() == 6


def test_confusion_matrix_accepts_channel_axis_batches_and_scores():
    expected = HAND_CM
    true_with_channel = HAND_TRUE[None, :, :, None]  # (1, 2, 3, 1)
    np.testing.assert_array_equal(metrics.confusion_matrix(true_with_channel, HAND_PRED[None]), expected)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(true_with_channel, HAND_PRED[None, :, :, None]), expected
    )
    # Scores with a trailing class axis are arg-maxed.
    np.testing.assert_array_equal(
        metrics.confusion_matrix(true_with_channel, _hand_logits(HAND_PRED)[None]), expected
    )
    # Whole-number floats are accepted as class indices.
    np.testing.assert_array_equal(metrics.confusion_matrix(HAND_TRUE.astype(float), HAND_PRED), expected)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="0..2"):
        metrics.confusion_matrix(HAND_TRUE, HAND_PRED + 1)
    with pytest.raises(ValueError, match="does not match"):
        metrics.confusion_matrix(HAND_TRUE, HAND_PRED[:, :2])
    with pytest.raises(ValueError, match="whole class indices"):
        metrics.confusion_matrix(HAND_TRUE, HAND_PRED + 0.5)
    with pytest.raises(ValueError, match="num_classes"):
        metrics.confusion_matrix(HAND_TRUE, HAND_PRED, num_classes=1)


def test_per_image_confusion_matrices():
    true = np.stack([HAND_TRUE, HAND_TRUE])
    predicted = np.stack([HAND_PRED, HAND_TRUE])  # the second image is predicted perfectly
    matrices = metrics.per_image_confusion_matrices(true, predicted)
    assert matrices.shape == (2, 3, 3)
    np.testing.assert_array_equal(matrices[0], HAND_CM)
    # Perfect prediction: the pixel count of each true class on the diagonal (2 pet, 3 background, 1 border).
    np.testing.assert_array_equal(matrices[1], np.diag([2, 3, 1]))
    np.testing.assert_array_equal(matrices.sum(axis=0), metrics.confusion_matrix(true, predicted))


# --------------------------------------------------------------------------------------------
# Formulas


def test_metrics_of_the_hand_example():
    cm = HAND_CM
    # pet:        TP = 1, FP = column 0 (1+1+1) - 1 = 2, FN = row 0 (1+0+1) - 1 = 1 -> IoU 1/4
    # background: TP = 2, FP = column 1 (0+2+0) - 2 = 0, FN = row 1 (1+2+0) - 2 = 1 -> IoU 2/3
    # border:     TP = 0, FP = column 2 (1+0+0) - 0 = 1, FN = row 2 (1+0+0) - 0 = 1 -> IoU 0/2
    np.testing.assert_allclose(metrics.iou_per_class(cm), [1 / 4, 2 / 3, 0.0])
    assert metrics.mean_iou(cm) == pytest.approx((1 / 4 + 2 / 3 + 0) / 3)  # = 11/36
    # Diagonal 1 + 2 + 0 = 3 of 6 pixels.
    assert metrics.pixel_accuracy(cm) == pytest.approx(3 / 6)
    # Pet Dice: 2 TP / (2 TP + FP + FN) = 2 / (2 + 2 + 1).
    assert metrics.pet_dice(cm) == pytest.approx(2 / 5)
    assert metrics.class_dice(cm, BACKGROUND) == pytest.approx(4 / (4 + 0 + 1))
    # Foreground = pet + border. TP = cm[0,0] + cm[0,2] + cm[2,0] + cm[2,2] = 1 + 1 + 1 + 0 = 3,
    # FP = cm[1,0] + cm[1,2] = 1 (background called pet), FN = cm[0,1] + cm[2,1] = 0.
    assert metrics.foreground_counts(cm) == (3, 1, 0)
    assert metrics.foreground_iou(cm) == pytest.approx(3 / 4)
    assert metrics.foreground_dice(cm) == pytest.approx(6 / 7)


def test_summarize_keys_and_values():
    summary = metrics.summarize(HAND_CM)
    assert set(summary) == {"fg_iou", "fg_dice", "pet_dice", "mean_iou", "iou_per_class", "pixel_accuracy"}
    assert summary["fg_iou"] == pytest.approx(3 / 4)
    assert summary["fg_dice"] == pytest.approx(6 / 7)
    assert summary["pet_dice"] == pytest.approx(2 / 5)
    assert summary["mean_iou"] == pytest.approx(11 / 36)
    assert summary["pixel_accuracy"] == pytest.approx(1 / 2)
    assert summary["iou_per_class"] == pytest.approx({"pet": 1 / 4, "background": 2 / 3, "border": 0.0})
    assert all(isinstance(summary[key], float) for key in ("fg_iou", "mean_iou", "pixel_accuracy"))


def test_absent_class_is_nan_and_left_out_of_the_mean():
    # No border anywhere. Pairs: (0,0) (1,1) / (1,0) (1,1).
    true = np.array([[0, 1], [1, 1]])
    predicted = np.array([[0, 1], [0, 1]])
    cm = metrics.confusion_matrix(true, predicted)
    iou = metrics.iou_per_class(cm)
    # pet: TP 1, FP 1, FN 0 -> 1/2; background: TP 2, FP 0, FN 1 -> 2/3; border: 0/0 -> NaN.
    assert iou[PET] == pytest.approx(1 / 2)
    assert iou[BACKGROUND] == pytest.approx(2 / 3)
    assert math.isnan(iou[BORDER])
    # Mean over the two defined classes, not three.
    assert metrics.mean_iou(cm) == pytest.approx((1 / 2 + 2 / 3) / 2)
    # Undefined everywhere: an empty matrix.
    empty = np.zeros((3, 3))
    assert math.isnan(metrics.mean_iou(empty))
    assert math.isnan(metrics.foreground_iou(empty))
    assert math.isnan(metrics.pixel_accuracy(empty))


def test_pet_border_confusion_does_not_hurt_foreground_scores():
    true = np.array([[PET, PET], [BORDER, BACKGROUND]])
    swapped = np.array([[BORDER, BORDER], [PET, BACKGROUND]])  # pet and border swapped everywhere
    cm = metrics.confusion_matrix(true, swapped)
    assert metrics.foreground_iou(cm) == 1.0
    assert metrics.foreground_dice(cm) == 1.0
    assert metrics.pet_dice(cm) == 0.0
    assert metrics.iou_per_class(cm)[PET] == 0.0
    assert metrics.iou_per_class(cm)[BORDER] == 0.0


def test_formulas_reject_non_square_matrices():
    with pytest.raises(ValueError, match="square"):
        metrics.mean_iou(np.zeros((2, 3)))


# --------------------------------------------------------------------------------------------
# Keras metrics


def _random_batches(count, seed=0, shape=(2, 6, 6)):
    rng = np.random.default_rng(seed)
    return [
        (
            rng.integers(0, 3, shape + (1,)).astype("int32"),
            rng.normal(size=shape + (3,)).astype("float32"),
        )
        for _ in range(count)
    ]


def test_keras_metrics_agree_with_numpy_over_several_batches():
    batches = _random_batches(3)
    expected_cm = sum(metrics.confusion_matrix(masks, logits) for masks, logits in batches)
    expected = metrics.summarize(expected_cm)
    for metric in metrics.training_metrics():
        for masks, logits in batches:
            metric.update_state(masks, logits)
        assert float(metric.result()) == pytest.approx(expected[metric.name], rel=1e-6), metric.name
    assert [metric.name for metric in metrics.training_metrics()] == [
        "fg_iou",
        "fg_dice",
        "mean_iou",
        "pet_dice",
        "pixel_accuracy",
    ]


def test_keras_metric_counts_reset_and_sample_weights():
    (masks, logits), *_ = _random_batches(1, seed=1)
    metric = metrics.ConfusionMatrixMetric()
    metric.update_state(masks, logits)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(metric.result()), metrics.confusion_matrix(masks, logits)
    )
    metric.reset_state()
    assert keras.ops.convert_to_numpy(metric.result()).sum() == 0

    # Weight 0 on some pixels: the metric equals the numpy one on the remaining pixels.
    keep = np.random.default_rng(2).random(masks.shape[:3]) < 0.5
    weighted = metrics.ForegroundIoU()
    weighted.update_state(masks, logits, sample_weight=keep.astype("float32"))
    kept_cm = metrics.confusion_matrix(masks[..., 0][keep], np.argmax(logits, axis=-1)[keep])
    assert float(weighted.result()) == pytest.approx(metrics.foreground_iou(kept_cm), rel=1e-6)


def test_keras_metric_config_round_trip():
    metric = metrics.MeanIoU(num_classes=4, name="miou4")
    clone = metrics.MeanIoU.from_config(metric.get_config())
    assert clone.name == "miou4"
    assert clone.num_classes == 4
    assert keras.saving.get_registered_name(metrics.ForegroundIoU) == "unet_clustering>ForegroundIoU"


# --------------------------------------------------------------------------------------------
# Losses


def test_soft_dice_of_perfect_and_wrong_predictions():
    labels = np.random.default_rng(3).integers(0, 3, (2, 5, 5, 1))
    perfect = _hand_logits(labels[..., 0])
    wrong = _hand_logits((labels[..., 0] + 1) % 3)
    loss = metrics.SoftDiceLoss()
    assert float(loss(labels, perfect)) == pytest.approx(0.0, abs=1e-4)
    assert float(loss(labels, wrong)) > 0.9


def test_soft_dice_by_hand():
    # Three pixels with labels 0, 0, 1 and zero logits, so every probability is 1/3. smooth = 1.
    # class 0: I = 2/3, P = 1, T = 2 -> (4/3 + 1) / (3 + 1) = 7/12
    # class 1: I = 1/3, P = 1, T = 1 -> (2/3 + 1) / (2 + 1) = 5/9
    # class 2: I = 0,   P = 1, T = 0 -> (0 + 1) / (1 + 1)   = 1/2
    labels = np.array([[[[0], [0], [1]]]])  # (1, 1, 3, 1)
    logits = np.zeros((1, 1, 3, 3), dtype="float32")
    expected = 1 - (7 / 12 + 5 / 9 + 1 / 2) / 3  # = 49/108
    assert float(metrics.SoftDiceLoss(smooth=1.0)(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_by_hand_with_weights():
    # Logits (ln 2, 0, 0) give probabilities (1/2, 1/4, 1/4).
    logits = np.array([[[[math.log(2), 0, 0], [math.log(2), 0, 0]]]], dtype="float32")  # (1, 1, 2, 3)
    labels = np.array([[[[0], [1]]]])  # cross-entropies -ln(1/2) = ln 2 and -ln(1/4) = 2 ln 2
    loss = metrics.make_loss("ce")
    assert float(loss(labels, logits)) == pytest.approx((math.log(2) + 2 * math.log(2)) / 2, rel=1e-5)
    # Weighted mean: (1 * ln 2 + 3 * 2 ln 2) / (1 + 3).
    weights = np.array([[[1.0, 3.0]]])
    assert float(loss(labels, logits, sample_weight=weights)) == pytest.approx(7 * math.log(2) / 4, rel=1e-5)


@pytest.mark.parametrize("kind", metrics.LOSS_KINDS)
def test_zero_weight_pixels_are_excluded(kind):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, (2, 4, 4, 1))
    logits = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    keep = rng.random((2, 4, 4)) < 0.6
    loss = metrics.make_loss(kind)
    weighted = float(loss(labels, logits, sample_weight=keep.astype("float32")))
    # The same loss on only the kept pixels, laid out as one image of shape (1, K).
    kept_labels = labels[..., 0][keep][None, None, :, None]
    kept_logits = logits[keep][None, None]
    assert weighted == pytest.approx(float(loss(kept_labels, kept_logits)), rel=1e-5)
    # ... and differs from the unweighted loss.
    assert weighted != pytest.approx(float(loss(labels, logits)), rel=1e-3)
    if kind == "ce":
        # Scaling all weights by a constant changes nothing: the cross-entropy is a weighted mean.
        # (Not exactly true of Dice, whose smoothing constant does not scale with the weights.)
        assert float(loss(labels, logits, sample_weight=2 * np.ones((2, 4, 4)))) == pytest.approx(
            float(loss(labels, logits)), rel=1e-5
        )


def test_combined_loss_is_the_weighted_sum():
    (masks, logits), *_ = _random_batches(1, seed=5)
    cross_entropy = float(metrics.make_loss("ce")(masks, logits))
    dice = float(metrics.make_loss("dice")(masks, logits))
    combined = float(metrics.make_loss("ce+dice", dice_weight=0.5)(masks, logits))
    assert combined == pytest.approx(cross_entropy + 0.5 * dice, rel=1e-5)
    with pytest.raises(ValueError, match="kind"):
        metrics.make_loss("focal")
    with pytest.raises(ValueError, match="dice_weight"):
        metrics.CombinedLoss(dice_weight=-1)


def test_pixel_weights_and_class_weight_map():
    masks = np.array([[[0, 1], [2, 1]]])[..., None]  # (1, 2, 2, 1)
    expected = np.array([[[1.0, 0.5], [3.0, 0.5]]])
    np.testing.assert_allclose(metrics.pixel_weights(masks, [1.0, 0.5, 3.0]), expected)
    np.testing.assert_allclose(metrics.pixel_weights(masks, {"background": 0.5, "border": 3.0}), expected)
    mapped = keras.ops.convert_to_numpy(metrics.class_weight_map(masks, [1.0, 0.5, 3.0]))
    assert mapped.shape == (1, 2, 2)
    np.testing.assert_allclose(mapped, expected)
    with pytest.raises(ValueError, match="3 weights"):
        metrics.pixel_weights(masks, [1.0, 2.0])
    with pytest.raises(ValueError, match="cat"):
        metrics.pixel_weights(masks, {"cat": 2.0})


def test_inverse_frequency_weights_by_hand():
    # 3 pet pixels and 1 background pixel: N = 4, C = 3 -> w = 4 / (3 n_c); border absent -> 0.
    weights = metrics.inverse_frequency_weights(np.array([[0, 0], [0, 1]]))
    np.testing.assert_allclose(weights, [4 / 9, 4 / 3, 0.0], rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Dataset evaluation


def _tiny_model_and_data(count=5, size=8, seed=6):
    keras.utils.set_random_seed(seed)
    model = unet.build_unet(image_size=size, base_filters=2, depth=1)
    rng = np.random.default_rng(seed)
    images = rng.random((count, size, size, 3)).astype("float32")
    masks = rng.integers(0, 3, (count, size, size, 1)).astype("int32")
    return model, images, masks


def test_evaluate_matches_a_direct_confusion_matrix():
    model, images, masks = _tiny_model_and_data()
    direct_cm = metrics.confusion_matrix(masks, keras.ops.convert_to_numpy(model(images, training=False)))
    # batch_size 2 leaves a last batch of 1: counts must still cover all 5 images.
    result = metrics.evaluate(model, (images, masks), batch_size=2)
    np.testing.assert_array_equal(result["confusion_matrix"], direct_cm)
    assert result["num_images"] == 5
    assert result["fg_iou"] == pytest.approx(metrics.foreground_iou(direct_cm))
    assert result["mean_iou"] == pytest.approx(metrics.mean_iou(direct_cm))
    # The same data as an iterable of batches (the shape of a tf.data.Dataset).
    batches = [(images[:3], masks[:3]), (images[3:], masks[3:])]
    assert metrics.evaluate(model, batches)["confusion_matrix"] == result["confusion_matrix"]
    np.testing.assert_array_equal(
        metrics.predict_masks(model, images, batch_size=3),
        np.argmax(model.predict(images, verbose=0), axis=-1),
    )
    with pytest.raises(ValueError, match="no batches"):
        metrics.evaluate(model, [])


class _PositionBiasedModel:
    """A stand-in model whose logits favour class 0 on the left: its prediction is not mirror-symmetric."""

    def __init__(self, width):
        self.bias = np.zeros((1, 1, width, 3), dtype="float32")
        self.bias[..., 0] = np.linspace(2.0, -2.0, width)

    def __call__(self, images, training=False):
        assert training is False, "evaluation must run the model in inference mode"
        return images + self.bias


def test_flip_test_time_augmentation_averages_mirrored_predictions():
    rng = np.random.default_rng(7)
    images = rng.random((3, 4, 5, 3)).astype("float32")
    model = _PositionBiasedModel(width=5)

    def softmax(logits):
        exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exponentials / exponentials.sum(axis=-1, keepdims=True)

    plain = softmax(images + model.bias)
    mirrored_back = softmax(images[:, :, ::-1] + model.bias)[:, :, ::-1]
    np.testing.assert_allclose(metrics.predict_probabilities(model, images, batch_size=2), plain, rtol=1e-5)
    np.testing.assert_allclose(
        metrics.predict_probabilities(model, images, batch_size=2, tta_flip=True),
        (plain + mirrored_back) / 2,
        rtol=1e-5,
    )
    predicted = metrics.predict_masks(model, images, tta_flip=True)
    assert predicted.dtype == np.int32
    np.testing.assert_array_equal(predicted, np.argmax(plain + mirrored_back, axis=-1))


def test_per_image_scores_and_worst_images():
    true = np.stack([HAND_TRUE, HAND_TRUE, HAND_TRUE])
    predicted = np.stack([HAND_TRUE, HAND_PRED, np.full_like(HAND_TRUE, BACKGROUND)])
    scores = metrics.image_scores(true, predicted)
    assert [score["index"] for score in scores] == [0, 1, 2]
    assert scores[0]["fg_iou"] == 1.0  # perfect
    assert scores[1]["fg_iou"] == pytest.approx(3 / 4)  # the hand example
    assert scores[2]["fg_iou"] == 0.0  # no foreground predicted
    worst = metrics.worst_images(scores, count=2)
    assert [score["index"] for score in worst] == [2, 1]
    with_nan = [*scores, {"index": 3, "fg_iou": float("nan")}]
    assert metrics.worst_images(with_nan, count=4)[-1]["index"] == 3

    model, images, masks = _tiny_model_and_data(count=3)
    model_scores = metrics.per_image_scores(model, images, masks)
    direct = metrics.image_scores(masks, metrics.predict_masks(model, images))
    assert model_scores == direct


# --------------------------------------------------------------------------------------------
# Training and saving


def test_compiled_model_trains_with_pixel_weights_saves_and_loads(tmp_path):
    model, images, masks = _tiny_model_and_data(count=4)
    model.compile(optimizer="adam", loss=metrics.make_loss("ce+dice"), metrics=metrics.training_metrics())
    weights = metrics.pixel_weights(masks, [1.0, 0.5, 2.0])
    history = model.fit(images, masks, sample_weight=weights, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert {"fg_iou", "fg_dice", "mean_iou", "pet_dice", "pixel_accuracy"} <= set(history.history)

    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(images, training=False)),
        keras.ops.convert_to_numpy(model(images, training=False)),
        rtol=1e-6,
        atol=1e-6,
    )
    assert isinstance(loaded.loss, metrics.CombinedLoss)
    assert loaded.loss.get_config() == model.loss.get_config()
    # The reloaded metrics log the numpy metrics of the same predictions.
    logged = loaded.evaluate(images, masks, batch_size=2, verbose=0, return_dict=True)
    expected = metrics.evaluate(model, (images, masks))
    for name in ("fg_iou", "fg_dice", "mean_iou", "pet_dice", "pixel_accuracy"):
        assert logged[name] == pytest.approx(expected[name], rel=1e-6), name
