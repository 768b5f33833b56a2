"""Tests of the U-Net builder: shapes, the layer naming contract, parameter counts, validation."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from unet_clustering import unet


def test_output_shape_and_dtype():
    model = unet.build_unet(image_size=32, num_classes=3, base_filters=4, depth=3)
    assert model.name == "unet"
    assert tuple(model.input.shape) == (None, 32, 32, 3)
    assert tuple(model.output.shape) == (None, 32, 32, 3)
    logits = keras.ops.convert_to_numpy(model(np.zeros((2, 32, 32, 3), dtype="float32")))
    assert logits.shape == (2, 32, 32, 3)
    assert logits.dtype == np.float32


def test_logits_stay_float32_under_mixed_precision():
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = unet.build_unet(image_size=16, base_filters=2, depth=2)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert model.get_layer("enc1").output.dtype == "float16"
    assert model.output.dtype == "float32"


def test_stage_layer_names():
    assert unet.stage_layer_names(3) == ["enc1", "enc2", "enc3", "bottleneck", "dec3", "dec2", "dec1"]
    assert unet.stage_layer_names(1) == ["enc1", "bottleneck", "dec1"]
    with pytest.raises(ValueError, match="depth"):
        unet.stage_layer_names(0)


@pytest.mark.parametrize("depth", [3, 4])
def test_named_stages_have_the_contract_resolutions(depth):
    size, base_filters = 32, 2
    model = unet.build_unet(image_size=size, base_filters=base_filters, depth=depth)
    for stage in range(1, depth + 1):
        side = size // 2 ** (stage - 1)
        filters = base_filters * 2 ** (stage - 1)
        assert tuple(model.get_layer(f"enc{stage}").output.shape) == (None, side, side, filters)
        # dec_i has the resolution (and here the width) of enc_i.
        assert tuple(model.get_layer(f"dec{stage}").output.shape) == (None, side, side, filters)
    bottleneck_side = size // 2**depth
    assert tuple(model.get_layer("bottleneck").output.shape) == (
        None,
        bottleneck_side,
        bottleneck_side,
        base_filters * 2**depth,
    )
    logits = model.get_layer("logits")
    assert isinstance(logits, keras.layers.Conv2D)
    assert logits.kernel_size == (1, 1)
    assert logits.activation is keras.activations.linear
    assert model.layers[-1].name == "logits"


def test_sub_layers_have_readable_names():
    model = unet.build_unet(image_size=16, base_filters=2, depth=2)
    names = {layer.name for layer in model.layers}
    for expected in ["enc1_conv1", "enc1_bn1", "enc1_relu1", "enc1_conv2", "enc1_bn2", "pool1", "pool2"]:
        assert expected in names
    for expected in ["bottleneck_conv1", "dec2_up", "dec2_concat", "dec2_conv1", "dec1_up", "dec1_concat"]:
        assert expected in names
    assert isinstance(model.get_layer("dec2_up"), keras.layers.Conv2DTranspose)
    assert isinstance(model.get_layer("pool1"), keras.layers.MaxPooling2D)


def test_bilinear_upsampling_variant():
    model = unet.build_unet(image_size=16, base_filters=2, depth=2, upsampling="bilinear")
    assert not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in model.layers)
    upsampler = model.get_layer("dec2_up")
    assert isinstance(upsampler, keras.layers.UpSampling2D)
    assert upsampler.interpolation == "bilinear"
    assert tuple(model.get_layer("dec2").output.shape) == (None, 8, 8, 4)
    assert tuple(model.output.shape) == (None, 16, 16, 3)


def test_dropout_variant():
    plain = unet.build_unet(image_size=16, base_filters=2, depth=2)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in plain.layers)

    model = unet.build_unet(image_size=16, base_filters=2, depth=2, dropout=0.5)
    assert model.get_layer("bottleneck_dropout").rate == 0.5
    assert [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [
        "bottleneck_dropout"
    ]

    everywhere = unet.build_unet(image_size=16, base_filters=2, depth=2, dropout=0.5, dropout_in_decoder=True)
    dropout_names = {layer.name for layer in everywhere.layers if isinstance(layer, keras.layers.Dropout)}
    assert dropout_names == {"bottleneck_dropout", "dec2_dropout", "dec1_dropout"}

    # Dropout acts only in training mode.
    images = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    inference = keras.ops.convert_to_numpy(model(images, training=False))
    assert np.allclose(inference, keras.ops.convert_to_numpy(model(images, training=False)))
    assert not np.allclose(inference, keras.ops.convert_to_numpy(model(images, training=True)))


def test_invalid_image_size_names_nearest_valid_sizes():
    with pytest.raises(
        ValueError, match=r"image_size=100 is not divisible by 2\*\*4=16; nearest valid sizes: 96 or 112"
    ):
        unet.build_unet(image_size=100, depth=4)
    with pytest.raises(ValueError, match="nearest valid size: 16"):
        unet.build_unet(image_size=10, depth=4)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"depth": 0}, "depth"),
        ({"base_filters": 0}, "base_filters"),
        ({"num_classes": 1}, "num_classes"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"upsampling": "nearest"}, "upsampling"),
        ({"encoder": "resnet"}, "encoder"),
        ({"image_size": 0}, "image_size"),
    ],
)
def test_invalid_arguments_raise_clear_errors(arguments, named):
    with pytest.raises(ValueError, match=named):
        unet.build_unet(**{"image_size": 16, "depth": 2, "base_filters": 2, **arguments})


def test_parameter_count_worked_out_by_hand():
    # depth=1, base_filters=2, no batch norm, 3 classes. A KxK conv from c_in to c_out has
    # K*K*c_in*c_out weights plus c_out biases.
    enc1 = (3 * 3 * 3 * 2 + 2) + (3 * 3 * 2 * 2 + 2)  # 56 + 38 = 94
    bottleneck = (3 * 3 * 2 * 4 + 4) + (3 * 3 * 4 * 4 + 4)  # 76 + 148 = 224
    dec1_up = 2 * 2 * 4 * 2 + 2  # transposed 2x2 conv, 4 -> 2 channels: 34
    dec1 = (3 * 3 * (2 + 2) * 2 + 2) + (3 * 3 * 2 * 2 + 2)  # after concat with enc1: 74 + 38 = 112
    logits = 1 * 1 * 2 * 3 + 3  # 9
    expected = enc1 + bottleneck + dec1_up + dec1 + logits
    assert expected == 473
    model = unet.build_unet(image_size=4, base_filters=2, depth=1, batch_norm=False)
    assert unet.count_parameters(model) == expected
    assert unet.count_parameters(model, trainable_only=True) == expected

    # Bilinear: the 2x2 transposed conv becomes a 3x3 conv 4 -> 2 channels after a fixed upsampling.
    bilinear = unet.build_unet(image_size=4, base_filters=2, depth=1, batch_norm=False, upsampling="bilinear")
    assert unet.count_parameters(bilinear) == expected - dec1_up + (3 * 3 * 4 * 2 + 2)


def test_parameter_count_with_batch_norm_worked_out_by_hand():
    # With batch norm the 3x3 convs lose their bias; each norm has 4 numbers per channel
    # (gamma, beta trainable; moving mean, moving variance not).
    enc1 = 3 * 3 * 3 * 2 + 4 * 2 + 3 * 3 * 2 * 2 + 4 * 2  # 106
    bottleneck = 3 * 3 * 2 * 4 + 4 * 4 + 3 * 3 * 4 * 4 + 4 * 4  # 248
    dec1 = (2 * 2 * 4 * 2 + 2) + 3 * 3 * 4 * 2 + 4 * 2 + 3 * 3 * 2 * 2 + 4 * 2  # 158
    logits = 2 * 3 + 3  # 9
    moving_statistics = 2 * (2 + 2 + 4 + 4 + 2 + 2)  # mean and variance of the six norms
    model = unet.build_unet(image_size=4, base_filters=2, depth=1, batch_norm=True)
    assert unet.count_parameters(model) == enc1 + bottleneck + dec1 + logits == 521
    assert unet.count_parameters(model, trainable_only=True) == 521 - moving_statistics


def test_parameter_table():
    rows = unet.parameter_table(image_size=6, depths=(1, 2), base_filters=(2,), batch_norm=False)
    assert [(row["depth"], row["base_filters"]) for row in rows] == [(1, 2), (2, 2)]
    assert rows[0]["parameters"] == 473  # worked out in test_parameter_count_worked_out_by_hand
    # depth 2: enc1 94, enc2 76+148, bottleneck (3*3*4*8+8)+(3*3*8*8+8), dec2 up 2*2*8*4+4 then
    # (3*3*8*4+4)+(3*3*4*4+4), dec1 34+74+38, logits 9.
    assert rows[1]["parameters"] == 94 + 224 + 880 + 132 + 292 + 148 + 146 + 9
    # 6 px divides by 2 (bottleneck 3 px) but not by 4.
    assert rows[0]["bottleneck_size"] == 3
    assert rows[1]["bottleneck_size"] is None
    assert rows[1]["bottleneck_channels"] == 8


def test_model_is_not_compiled():
    model = unet.build_unet(image_size=8, base_filters=2, depth=1)
    assert getattr(model, "optimizer", None) is None
    assert not model.compiled


def _build_mobilenet(**arguments):
    return unet.build_unet(image_size=64, base_filters=4, encoder="mobilenetv2", **arguments)


def test_mobilenetv2_falls_back_to_random_weights_offline(monkeypatch, tmp_path):
    # Pretend there is no network and no cached file, whatever this machine has.
    monkeypatch.setattr(unet, "_weights_server_reachable", lambda *arguments: False)
    monkeypatch.setattr(unet, "_cached_weights_file", lambda image_size: tmp_path / "missing.h5")
    with pytest.warns(UserWarning, match="ImageNet weights could not be downloaded.*random weights"):
        model = _build_mobilenet()

    assert tuple(model.output.shape) == (None, 64, 64, 3)
    assert model.output.dtype == "float32"
    # Depth is fixed at 5; enc_i and dec_i share their resolution as in the plain U-Net.
    for stage in range(1, 6):
        side = 64 // 2 ** (stage - 1)
        assert model.get_layer(f"enc{stage}").output.shape[1:3] == (side, side)
        assert model.get_layer(f"dec{stage}").output.shape[1:3] == (side, side)
    assert model.get_layer("bottleneck").output.shape[1:3] == (2, 2)
    assert isinstance(model.get_layer("mobilenetv2_encoder"), keras.Model)

    # Images in [0, 1] reach MobileNetV2 in [-1, 1].
    rescale = model.get_layer("rescale")
    rescaled = keras.ops.convert_to_numpy(rescale(np.array([0.0, 0.5, 1.0], dtype="float32")))
    np.testing.assert_allclose(rescaled, [-1.0, 0.0, 1.0])


def test_mobilenetv2_failed_download_falls_back_or_raises(monkeypatch, tmp_path):
    original = keras.applications.MobileNetV2

    def offline_mobilenet(*arguments, weights=None, **keywords):
        if weights == "imagenet":
            raise OSError("simulated download failure")
        return original(*arguments, weights=weights, **keywords)

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline_mobilenet)
    monkeypatch.setattr(unet, "_weights_server_reachable", lambda *arguments: True)
    monkeypatch.setattr(unet, "_cached_weights_file", lambda image_size: tmp_path / "missing.h5")
    with pytest.warns(UserWarning, match="simulated download failure"):
        model = _build_mobilenet()
    assert tuple(model.output.shape) == (None, 64, 64, 3)
    with pytest.raises(RuntimeError, match="pretrained=True"):
        _build_mobilenet(pretrained=True)


def test_mobilenetv2_without_pretraining_does_not_warn_and_validates_depth(monkeypatch):
    def must_not_probe(*arguments):
        raise AssertionError("pretrained=False must not touch the network")

    monkeypatch.setattr(unet, "_weights_server_reachable", must_not_probe)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = _build_mobilenet(pretrained=False)
    assert tuple(model.output.shape) == (None, 64, 64, 3)
    with pytest.raises(ValueError, match="depth must be 5"):
        _build_mobilenet(depth=4, pretrained=False)
    with pytest.raises(ValueError, match="nearest valid sizes: 32 or 64"):
        unet.build_unet(image_size=48, encoder="mobilenetv2", pretrained=False)


def test_model_stage_names_reads_the_depth_from_the_layers() -> None:
    model = unet.build_unet(image_size=16, base_filters=2, depth=2)
    assert unet.model_stage_names(model) == ["enc1", "enc2", "bottleneck", "dec2", "dec1"]
    plain = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(1, 1)])
    with pytest.raises(ValueError, match="not a U-Net"):
        unet.model_stage_names(plain)
    assert unet.encoder_stage_names(model) == ["enc1", "enc2", "bottleneck"]
