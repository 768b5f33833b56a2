"""The two reference designs: their published sizes, output contract and frozen encoder."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from unet_clustering import anchors, unet

#: Parameter count the keras.io example reports for its Oxford Pets model (3 classes).
KERAS_IO_PUBLISHED_PARAMETERS = 2_058_979


def _keras_io_parameters_by_hand(num_classes: int) -> int:
    """Count the keras.io model's weights layer by layer (kernel + bias; batch norm has 4 per channel)."""
    total = 3 * 3 * 3 * 32 + 32 + 4 * 32  # entry convolution and its batch norm
    channels = 32
    for filters in (64, 128, 256):
        # Two separable convolutions (depthwise 3x3, pointwise 1x1 with bias), each with batch norm.
        total += 9 * channels + channels * filters + filters + 4 * filters
        total += 9 * filters + filters * filters + filters + 4 * filters
        total += channels * filters + filters  # 1x1 shortcut
        channels = filters
    for filters in (256, 128, 64, 32):
        total += 9 * channels * filters + filters + 4 * filters
        total += 9 * filters * filters + filters + 4 * filters
        total += channels * filters + filters  # 1x1 shortcut after upsampling
        channels = filters
    return total + 9 * channels * num_classes + num_classes


def test_keras_io_unet_has_the_published_parameter_count():
    model = anchors.build_keras_io_unet(image_size=64, num_classes=3)
    assert model.count_params() == KERAS_IO_PUBLISHED_PARAMETERS == _keras_io_parameters_by_hand(3)
    assert anchors.build_keras_io_unet(64, num_classes=5).count_params() == _keras_io_parameters_by_hand(5)


@pytest.mark.parametrize("image_size", [64, 160])
def test_keras_io_unet_maps_images_to_float32_logits(image_size):
    model = anchors.build_keras_io_unet(image_size=image_size)
    assert model.count_params() == KERAS_IO_PUBLISHED_PARAMETERS
    images = np.random.default_rng(0).random((2, image_size, image_size, 3), dtype=np.float32)
    logits = keras.ops.convert_to_numpy(model(images))
    assert logits.shape == (2, image_size, image_size, 3)
    assert logits.dtype == np.float32
    assert model.get_layer("logits").dtype_policy.compute_dtype == "float32"
    # The encoder ends at S/16 and the decoder doubles it back four times.
    assert model.get_layer("down3_add").output.shape[1:3] == (image_size // 16, image_size // 16)


def test_keras_io_unet_rejects_bad_sizes():
    with pytest.raises(ValueError, match="multiple of 16.*Nearest valid sizes: 48 or 64"):
        anchors.build_keras_io_unet(image_size=60)
    with pytest.raises(ValueError, match="batch_norm_momentum"):
        anchors.build_keras_io_unet(image_size=64, batch_norm_momentum=1.5)


def test_tf_tutorial_unet_offline_warns_reports_random_and_freezes_the_encoder(monkeypatch, tmp_path):
    # Pretend there is no network and no cached weights file, whatever this machine has.
    monkeypatch.setattr(unet, "_weights_server_reachable", lambda *arguments: False)
    monkeypatch.setattr(unet, "_cached_weights_file", lambda image_size: tmp_path / "missing.h5")
    with pytest.warns(UserWarning, match="random weights"):
        model, encoder_weights = anchors.build_tf_tutorial_unet(image_size=64)
    assert encoder_weights == "random"

    images = np.random.default_rng(1).random((2, 64, 64, 3), dtype=np.float32)
    logits = keras.ops.convert_to_numpy(model(images))
    assert logits.shape == (2, 64, 64, 3) and logits.dtype == np.float32

    # Decoder by hand, at 3 classes: transposed 3x3 convolutions without bias (input channels:
    # 320 from block_16_project, then 512 + 576, 256 + 192, 128 + 144, 64 + 96 after each
    # concatenation), 4 batch-norm weights per channel, and the last one with bias.
    decoder = (
        9 * 320 * 512
        + 9 * (512 + 576) * 256
        + 9 * (256 + 192) * 128
        + 9 * (128 + 144) * 64
        + 4 * (512 + 256 + 128 + 64)
        + 9 * (64 + 96) * 3
        + 3
    )
    encoder = model.get_layer("mobilenetv2_encoder")
    assert model.count_params() - encoder.count_params() == decoder
    # Frozen encoder: only the decoder's kernels and batch-norm scales and offsets learn.
    moving_statistics = 2 * (512 + 256 + 128 + 64)
    trainable = unet.count_parameters(model, trainable_only=True)
    assert trainable == decoder - moving_statistics < model.count_params()


def test_tf_tutorial_unet_can_train_its_encoder_and_skips_the_network_when_asked(monkeypatch):
    def must_not_probe(*arguments):
        raise AssertionError("pretrained=False must not touch the network")

    monkeypatch.setattr(unet, "_weights_server_reachable", must_not_probe)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        frozen, weights = anchors.build_tf_tutorial_unet(image_size=64, pretrained=False)
        trained, _ = anchors.build_tf_tutorial_unet(image_size=64, pretrained=False, train_encoder=True)
    assert weights == "random"
    assert unet.count_parameters(frozen, trainable_only=True) < unet.count_parameters(
        trained, trainable_only=True
    )
    with pytest.raises(ValueError, match="multiple of 32.*Nearest valid sizes: 64 or 96"):
        anchors.build_tf_tutorial_unet(image_size=80, pretrained=False)
