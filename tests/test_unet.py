"""unet.py: the U-Net's stages, shapes and dtypes, and the MobileNetV2 variant (built offline)."""

from __future__ import annotations

import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from unet_clustering import unet


def stage_shapes(model: keras.Model) -> dict[str, tuple]:
    return {name: tuple(model.get_layer(name).output.shape) for name in unet.stage_names(model)}


@pytest.mark.parametrize("depth", [2, 3])
def test_stages_are_named_in_order_with_the_contract_shapes(depth: int) -> None:
    size, base_filters = 32, 4
    model = unet.build_unet(image_size=size, base_filters=base_filters, depth=depth)
    encoder = [f"enc{stage}" for stage in range(1, depth + 1)]
    decoder = [f"dec{stage}" for stage in range(depth, 0, -1)]
    assert unet.stage_names(model) == [*encoder, "bottleneck", *decoder]
    shapes = stage_shapes(model)
    for stage in range(1, depth + 1):
        side, filters = size // 2 ** (stage - 1), base_filters * 2 ** (stage - 1)
        assert shapes[f"enc{stage}"] == (None, side, side, filters)
        # dec_i has the resolution (and the width) of enc_i, whose output it concatenates.
        assert shapes[f"dec{stage}"] == shapes[f"enc{stage}"]
        assert model.get_layer(f"dec{stage}_concat").output.shape[-1] == 2 * filters
    bottom = size // 2**depth
    assert shapes["bottleneck"] == (None, bottom, bottom, base_filters * 2**depth)
    assert tuple(model.input.shape) == (None, size, size, 3)
    assert tuple(model.output.shape) == (None, size, size, 3)


def test_logits_are_a_linear_one_by_one_convolution_without_softmax() -> None:
    model = unet.build_unet(image_size=16, base_filters=2, depth=2, num_classes=5, name="tiny")
    assert model.name == "tiny"
    logits = model.get_layer("logits")
    assert model.layers[-1] is logits
    assert isinstance(logits, keras.layers.Conv2D) and logits.kernel_size == (1, 1)
    assert logits.activation is keras.activations.linear
    output = keras.ops.convert_to_numpy(
        model(np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32"), training=False)
    )
    assert output.shape == (2, 16, 16, 5) and output.dtype == np.float32
    assert np.isfinite(output).all()
    assert not np.allclose(output.sum(axis=-1), 1.0)  # raw logits, not probabilities


def test_conv_block_is_two_unbiased_convolutions_each_with_batch_norm_and_relu() -> None:
    model = unet.build_unet(image_size=16, base_filters=2, depth=1)
    for index in (1, 2):
        convolution = model.get_layer(f"enc1_conv{index}")
        assert convolution.kernel_size == (3, 3) and convolution.use_bias is False
        assert convolution.padding == "same"
        assert model.get_layer(f"enc1_bn{index}").momentum == unet.BATCH_NORM_MOMENTUM
    assert isinstance(model.get_layer("enc1_relu1"), keras.layers.ReLU)
    assert isinstance(model.get_layer("enc1"), keras.layers.ReLU)  # the block's output is its last ReLU
    assert isinstance(model.get_layer("pool1"), keras.layers.MaxPooling2D)
    assert isinstance(model.get_layer("dec1_up"), keras.layers.Conv2DTranspose)
    assert not model.compiled


@pytest.mark.parametrize(
    ("image_size", "depth", "nearest"),
    [(100, 4, r"\[96, 112\]"), (10, 4, r"\[16\]"), (30, 2, r"\[28, 32\]")],
)
def test_sizes_not_divisible_by_two_to_the_depth_are_refused_naming_valid_sizes(
    image_size: int, depth: int, nearest: str
) -> None:
    with pytest.raises(
        ValueError,
        match=rf"image_size={image_size} is not divisible by 2\*\*{depth}.*nearest valid sizes: {nearest}",
    ):
        unet.build_unet(image_size=image_size, base_filters=2, depth=depth)


def test_every_size_divisible_by_two_to_the_depth_builds() -> None:
    model = unet.build_unet(image_size=24, base_filters=2, depth=3)  # 24 = 3 * 2**3
    assert tuple(model.get_layer("bottleneck").output.shape) == (None, 3, 3, 16)


def test_logits_stay_float32_under_mixed_precision() -> None:
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = unet.build_unet(image_size=16, base_filters=2, depth=2)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert keras.mixed_precision.global_policy().name == previous.name
    assert model.get_layer("enc1").output.dtype == "float16"
    assert model.get_layer("dec1").output.dtype == "float16"
    assert model.output.dtype == "float32"
    logits = model(np.zeros((1, 16, 16, 3), dtype="float32"), training=False)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"


def test_the_same_seed_gives_the_same_weights() -> None:
    def build(seed: int) -> list[np.ndarray]:
        keras.utils.set_random_seed(seed)
        return unet.build_unet(image_size=16, base_filters=2, depth=2).get_weights()

    first, again, other = build(7), build(7), build(8)
    assert len(first) == len(again)
    # Exact: the same initialisers draw from the same seeded generator; no arithmetic differs.
    for left, right in zip(first, again, strict=True):
        np.testing.assert_array_equal(left, right)
    kernels = [index for index, weights in enumerate(first) if weights.ndim == 4]
    assert any(not np.array_equal(first[index], other[index]) for index in kernels)


def test_a_saved_model_loads_with_its_stages_and_outputs(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = unet.build_unet(image_size=16, base_filters=2, depth=2)
    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert unet.stage_names(loaded) == unet.stage_names(model)
    images = np.random.default_rng(1).random((2, 16, 16, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(images, training=False)), expected, rtol=1e-5, atol=1e-6
    )


def test_stage_names_of_a_model_without_stages_is_empty() -> None:
    plain = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(1, 1, name="enc1_conv1")])
    assert unet.stage_names(plain) == []


# --------------------------------------------------------------------------------------------
# MobileNetV2 encoder


@pytest.fixture(scope="module")
def mobilenet_unet() -> keras.Model:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # random weights asked for: no fallback warning
        return unet.build_mobilenet_unet(image_size=64, base_filters=4, weights=None)


def test_mobilenet_unet_names_its_stages_with_the_contract_resolutions(mobilenet_unet: keras.Model) -> None:
    model = mobilenet_unet
    assert model.name == "mobilenet_unet"
    names = unet.stage_names(model)
    assert sorted(names) == sorted(
        [*(f"enc{i}" for i in range(1, 6)), "bottleneck", *(f"dec{i}" for i in range(1, 6))]
    )
    for stage in range(1, 6):
        side = 64 // 2 ** (stage - 1)
        assert model.get_layer(f"enc{stage}").output.shape[1:3] == (side, side)
        assert model.get_layer(f"dec{stage}").output.shape[1:3] == (side, side)
        assert model.get_layer(f"dec{stage}").output.shape[-1] == 4 * 2 ** (stage - 1)
    assert model.get_layer("bottleneck").output.shape[1:3] == (2, 2)
    assert tuple(model.output.shape) == (None, 64, 64, 3) and model.output.dtype == "float32"
    assert isinstance(model.get_layer("mobilenetv2"), keras.Model)


def test_mobilenet_unet_sees_images_in_minus_one_to_one(mobilenet_unet: keras.Model) -> None:
    rescale = mobilenet_unet.get_layer("rescale")
    scaled = keras.ops.convert_to_numpy(rescale(np.array([0.0, 0.5, 1.0], dtype="float32")))
    np.testing.assert_allclose(scaled, [-1.0, 0.0, 1.0], atol=1e-7)
    logits = keras.ops.convert_to_numpy(
        mobilenet_unet(np.random.default_rng(0).random((1, 64, 64, 3)).astype("float32"), training=False)
    )
    assert logits.shape == (1, 64, 64, 3) and np.isfinite(logits).all()


def test_mobilenet_stage_names_run_from_input_to_output(mobilenet_unet: keras.Model) -> None:
    assert unet.stage_names(mobilenet_unet) == [
        *(f"enc{i}" for i in range(1, 6)),
        "bottleneck",
        *(f"dec{i}" for i in range(5, 0, -1)),
    ]


def test_mobilenet_unet_falls_back_to_random_weights_when_imagenet_weights_do_not_load(monkeypatch) -> None:
    original = keras.applications.MobileNetV2
    asked = []

    def offline_mobilenet(*arguments, weights=None, **keywords):
        asked.append(weights)
        if weights is not None:
            raise OSError("simulated download failure")
        return original(*arguments, weights=weights, **keywords)

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline_mobilenet)
    with pytest.warns(UserWarning, match="random weights.*simulated download failure"):
        model = unet.build_mobilenet_unet(image_size=32, base_filters=2, weights="imagenet")
    assert asked == ["imagenet", None]
    assert tuple(model.output.shape) == (None, 32, 32, 3)
