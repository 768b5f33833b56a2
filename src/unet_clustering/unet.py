"""The U-Net model (Ronneberger, Fischer and Brox, 2015), built with the Keras 3 functional API.

Taught in ``02_unet``; trained in ``03_training``; its named stages are read back in
``04_feature_extraction``.

A U-Net is an encoder that halves the resolution ``depth`` times while doubling the number of
filters, a bottleneck, and a decoder that doubles the resolution back, stage by stage, and at
each stage concatenates the encoder output of the same resolution (the "skip connection"), so
fine detail lost by pooling can be recovered.

Layer naming contract (other modules and notebooks rely on it), for depth ``D``:

* ``enc1`` ... ``encD``: encoder stage outputs; ``enc_i`` has resolution ``S / 2**(i-1)``;
* ``bottleneck``: resolution ``S / 2**D``;
* ``decD`` ... ``dec1``: decoder stage outputs; ``dec_i`` has the resolution of ``enc_i``;
* ``logits``: 1x1 convolution, float32, shape ``(batch, S, S, num_classes)``, no softmax.

Only ``keras.layers`` / ``keras.Model`` are used, so the model builds under any Keras backend.
"""

from __future__ import annotations

import numbers
import os
import socket
import threading
import warnings
from pathlib import Path
from urllib.parse import urlparse

import keras

from unet_clustering.config import NUM_CLASSES

UPSAMPLING_MODES: tuple[str, ...] = ("transpose", "bilinear")
ENCODERS: tuple[str, ...] = ("plain", "mobilenetv2")

#: Batch-norm moving-average momentum. Keras' default (0.99) averages over about 100 steps, but an
#: epoch of the few hundred training images here is only a few dozen steps: the statistics used at
#: evaluation would lag far behind the weights, and validation scores would swing wildly in early epochs.
BATCH_NORM_MOMENTUM = 0.9
#: The MobileNetV2 encoder halves the image this many times (its last tap is at ``S / 32``).
MOBILENETV2_DEPTH = 5
#: MobileNetV2 layers whose outputs become ``enc2`` ... ``enc5`` (resolutions S/2 ... S/16).
MOBILENETV2_SKIP_LAYERS: tuple[str, ...] = (
    "block_1_expand_relu",
    "block_3_expand_relu",
    "block_6_expand_relu",
    "block_13_expand_relu",
)
#: MobileNetV2 layer whose output becomes ``bottleneck`` (resolution S/32).
MOBILENETV2_BOTTLENECK_LAYER = "block_16_project"
#: Where Keras downloads the MobileNetV2 ImageNet weights from.
MOBILENETV2_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
#: Input sizes for which Keras publishes MobileNetV2 weights; other sizes use the 224 file.
MOBILENETV2_WEIGHT_SIZES: tuple[int, ...] = (96, 128, 160, 192, 224)
#: Seconds to wait for the weights server before giving up and using random weights.
WEIGHTS_PROBE_TIMEOUT_SECONDS = 3.0


def stage_layer_names(depth: int) -> list[str]:
    """Names of the stage outputs of a U-Net of the given depth, from input to output.

    ``stage_layer_names(3)`` is ``["enc1", "enc2", "enc3", "bottleneck", "dec3", "dec2", "dec1"]``.
    Use it to pick the layers whose activations you want to look at or cluster. With the
    MobileNetV2 encoder the depth is :data:`MOBILENETV2_DEPTH`.

    Taught in ``02_unet``; used in ``04_feature_extraction``.
    """
    _check_integer("depth", depth, minimum=1)
    encoder = [f"enc{stage}" for stage in range(1, depth + 1)]
    decoder = [f"dec{stage}" for stage in range(depth, 0, -1)]
    return [*encoder, "bottleneck", *decoder]


def model_stage_names(model: keras.Model) -> list[str]:
    """The stage layer names of a built (or loaded) U-Net, from input to output.

    The same list as :func:`stage_layer_names` for the model's own depth, read from its layers,
    so it also works on a model loaded from a file. Used in ``04_feature_extraction``.
    """
    names = {layer.name for layer in model.layers}
    depth = sum(f"enc{stage}" in names for stage in range(1, len(model.layers)))
    if depth == 0 or "bottleneck" not in names:
        raise ValueError(
            f"{model.name!r} has no enc1 / bottleneck layers: it is not a U-Net built by unet.py."
        )
    return stage_layer_names(depth)


def encoder_stage_names(model: keras.Model) -> list[str]:
    """The encoder half of :func:`model_stage_names`: ``enc1`` ... ``encD`` and ``bottleneck``.

    These stages describe the image itself; the decoder stages are already shaped towards the
    three output classes. Used in ``05_clustering`` to describe whole pets.
    """
    stages = model_stage_names(model)
    return stages[: stages.index("bottleneck") + 1]


def build_unet(
    image_size: int = 128,
    num_classes: int = NUM_CLASSES,
    base_filters: int = 32,
    depth: int | None = None,
    batch_norm: bool = True,
    dropout: float = 0.0,
    upsampling: str = "transpose",
    encoder: str = "plain",
    name: str = "unet",
    dropout_in_decoder: bool = False,
    pretrained: bool | None = None,
) -> keras.Model:
    """Build an uncompiled U-Net that maps images ``(batch, S, S, 3)`` in [0, 1] to logits.

    Arguments:
        image_size: side ``S`` of the square input; must be divisible by ``2**depth``.
        num_classes: number of output channels (3 for the pet trimap).
        base_filters: filters of the first encoder stage; stage ``i`` has
            ``base_filters * 2**(i-1)`` filters and the bottleneck ``base_filters * 2**depth``.
        depth: how many times the encoder halves the resolution. ``None`` means 4 for the
            plain encoder and 5 (the only possible value) for MobileNetV2.
        batch_norm: put a BatchNormalization between each 3x3 convolution and its ReLU.
        dropout: dropout rate after the bottleneck (0 disables it); must be in [0, 1).
        upsampling: ``"transpose"`` (learned 2x2 transposed convolution, stride 2) or
            ``"bilinear"`` (fixed bilinear upsampling followed by a learned 3x3 convolution).
        encoder: ``"plain"`` (the original U-Net encoder, trained from scratch) or
            ``"mobilenetv2"`` (an ImageNet-pretrained MobileNetV2 as encoder, see below).
        name: the model's name.
        dropout_in_decoder: also apply ``dropout`` after each decoder concatenation.
        pretrained: MobileNetV2 only. ``None`` tries to download the ImageNet weights and falls
            back to random weights with a warning; ``True`` requires them (raises if they cannot
            be loaded); ``False`` starts from random weights without trying.

    Returns a ``keras.Model`` named ``name`` whose stage outputs follow the naming contract of
    this module's docstring. Sub-layers have readable names too: ``enc1_conv1``, ``enc1_bn1``,
    ``enc1_relu1``, ``enc1_conv2``, ``enc1_bn2``, then ``enc1`` (the second ReLU is the stage
    output), ``pool1``, ``bottleneck_dropout``, ``dec2_up``, ``dec2_concat``, ...

    With ``encoder="mobilenetv2"`` the input is rescaled to [-1, 1] (layer ``rescale``, what
    MobileNetV2 was trained on) and fed to a sub-model ``mobilenetv2_encoder``. ``enc1`` is the
    rescaled image itself (full resolution, 3 channels, no parameters) so that ``dec1`` can still
    concatenate a full-resolution skip; ``enc2`` ... ``enc5`` are the MobileNetV2 activations
    :data:`MOBILENETV2_SKIP_LAYERS` (``S/2`` ... ``S/16``) and ``bottleneck`` is
    :data:`MOBILENETV2_BOTTLENECK_LAYER` (``S/32``). Freeze the encoder for transfer learning with
    ``model.get_layer("mobilenetv2_encoder").trainable = False``.

    The model is not compiled: ``03_training`` chooses the optimizer, loss and metrics.

    Taught in ``02_unet``.
    """
    _check_integer("num_classes", num_classes, minimum=2)
    _check_integer("base_filters", base_filters, minimum=1)
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1) (0 disables dropout); got dropout={dropout!r}.")
    if upsampling not in UPSAMPLING_MODES:
        raise ValueError(
            f"upsampling must be one of {list(UPSAMPLING_MODES)}; got upsampling={upsampling!r}."
        )
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {list(ENCODERS)}; got encoder={encoder!r}.")
    if pretrained not in (None, True, False):
        raise ValueError(f"pretrained must be None, True or False; got pretrained={pretrained!r}.")

    if encoder == "mobilenetv2":
        if depth is None:
            depth = MOBILENETV2_DEPTH
        if depth != MOBILENETV2_DEPTH:
            raise ValueError(
                f"depth must be {MOBILENETV2_DEPTH} (or None) with encoder='mobilenetv2': MobileNetV2 halves "
                f"the image {MOBILENETV2_DEPTH} times; got depth={depth!r}."
            )
    elif depth is None:
        depth = 4
    _check_integer("depth", depth, minimum=1)
    _check_integer("image_size", image_size, minimum=1)
    _check_divisible(image_size, depth)

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    block_options = {"batch_norm": batch_norm}

    if encoder == "plain":
        skips, features = _plain_encoder(inputs, base_filters, depth, block_options)
    else:
        skips, features = _mobilenetv2_encoder(inputs, image_size, pretrained)

    if dropout > 0:
        features = keras.layers.Dropout(dropout, name="bottleneck_dropout")(features)

    # Decoder: walk back up, from the deepest stage to full resolution.
    for stage in range(depth, 0, -1):
        filters = base_filters * 2 ** (stage - 1)
        features = _upsample(features, filters, upsampling, batch_norm, name=f"dec{stage}")
        features = keras.layers.Concatenate(name=f"dec{stage}_concat")([features, skips[stage - 1]])
        if dropout > 0 and dropout_in_decoder:
            features = keras.layers.Dropout(dropout, name=f"dec{stage}_dropout")(features)
        features = _conv_block(features, filters, name=f"dec{stage}", **block_options)

    # float32 output even under a mixed-precision policy, so the softmax and loss stay accurate.
    logits = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="logits")(features)
    return keras.Model(inputs, logits, name=name)


def count_parameters(model: keras.Model, trainable_only: bool = False) -> int:
    """Number of weights in ``model`` (all of them, or only the trainable ones).

    All parameters include the BatchNormalization moving mean and variance, which are learned
    from data but not by gradient descent. Taught in ``02_unet``.
    """
    weights = model.trainable_weights if trainable_only else model.weights
    total = 0
    for weight in weights:
        size = 1
        for dimension in weight.shape:
            size *= int(dimension)
        total += size
    return total


def parameter_table(
    image_size: int = 128,
    depths: tuple[int, ...] = (3, 4, 5),
    base_filters: tuple[int, ...] = (8, 16, 32),
    **build_options,
) -> list[dict]:
    """Parameter count of a plain U-Net for every ``(depth, base_filters)`` combination.

    Each row is ``{"depth", "base_filters", "parameters", "bottleneck_size",
    "bottleneck_channels"}`` where ``bottleneck_size`` is the bottleneck's side at
    ``image_size`` (``None`` when ``image_size`` is not divisible by ``2**depth``). The count does
    not depend on the image size (convolutions share weights across positions), so each model
    is built at the smallest valid size, which keeps the table fast. Extra keyword arguments go
    to :func:`build_unet` (e.g. ``batch_norm=False``).

    Taught in ``02_unet``.
    """
    _check_integer("image_size", image_size, minimum=1)
    rows = []
    for depth in depths:
        for filters in base_filters:
            model = build_unet(
                image_size=2**depth,
                base_filters=filters,
                depth=depth,
                name=f"unet_depth{depth}_filters{filters}",
                **build_options,
            )
            divisible = image_size % 2**depth == 0
            rows.append(
                {
                    "depth": depth,
                    "base_filters": filters,
                    "parameters": count_parameters(model),
                    "bottleneck_size": image_size // 2**depth if divisible else None,
                    "bottleneck_channels": filters * 2**depth,
                }
            )
    return rows


# --------------------------------------------------------------------------------------------
# Building blocks


def _conv_block(features, filters: int, name: str, batch_norm: bool):
    """Two (3x3 convolution [+ batch norm] + ReLU) layers; the last ReLU is named ``name``."""
    for index in (1, 2):
        # A convolution followed by batch norm needs no bias: the norm's offset replaces it.
        features = keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=not batch_norm,
            kernel_initializer="he_normal",
            name=f"{name}_conv{index}",
        )(features)
        if batch_norm:
            features = keras.layers.BatchNormalization(
                momentum=BATCH_NORM_MOMENTUM, name=f"{name}_bn{index}"
            )(features)
        relu_name = name if index == 2 else f"{name}_relu{index}"
        features = keras.layers.ReLU(name=relu_name)(features)
    return features


def _upsample(features, filters: int, mode: str, batch_norm: bool, name: str):
    """Double the resolution: a learned transposed convolution, or bilinear + 3x3 convolution."""
    if mode == "transpose":
        return keras.layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"{name}_up")(
            features
        )
    features = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(features)
    return keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_upconv")(features)


def _plain_encoder(inputs, base_filters: int, depth: int, block_options: dict):
    """The original U-Net encoder: returns the skip tensors ``[enc1, ...]`` and the bottleneck."""
    skips = []
    features = inputs
    for stage in range(1, depth + 1):
        features = _conv_block(features, base_filters * 2 ** (stage - 1), name=f"enc{stage}", **block_options)
        skips.append(features)
        features = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(features)
    features = _conv_block(features, base_filters * 2**depth, name="bottleneck", **block_options)
    return skips, features


def _mobilenetv2_encoder(inputs, image_size: int, pretrained: bool | None):
    """ImageNet MobileNetV2 as encoder: returns the skips ``[enc1, ..., enc5]`` and the bottleneck."""
    # MobileNetV2 was trained on pixels in [-1, 1]; our images are in [0, 1].
    rescaled = keras.layers.Rescaling(scale=2.0, offset=-1.0, name="rescale")(inputs)
    backbone = _load_mobilenetv2(image_size, pretrained)
    tapped = [
        backbone.get_layer(layer).output for layer in (*MOBILENETV2_SKIP_LAYERS, MOBILENETV2_BOTTLENECK_LAYER)
    ]
    feature_extractor = keras.Model(backbone.input, tapped, name="mobilenetv2_encoder")
    *deep_skips, bottleneck = feature_extractor(rescaled)
    # Identity layers give the tapped tensors the names of the contract.
    skips = [keras.layers.Identity(name="enc1")(rescaled)]
    for stage, skip in enumerate(deep_skips, start=2):
        skips.append(keras.layers.Identity(name=f"enc{stage}")(skip))
    return skips, keras.layers.Identity(name="bottleneck")(bottleneck)


def _load_mobilenetv2(image_size: int, pretrained: bool | None) -> keras.Model:
    """MobileNetV2 without its classifier, with ImageNet weights when ``pretrained`` allows."""

    def build(weights):
        with warnings.catch_warnings():
            # Keras warns that other sizes load the 224-pixel weights: harmless, since convolution
            # weights do not depend on the image size.
            warnings.filterwarnings("ignore", message=".*input_shape.* is undefined or non-square")
            return keras.applications.MobileNetV2(
                input_shape=(image_size, image_size, 3), include_top=False, weights=weights
            )

    if pretrained is False:
        return build(None)
    if pretrained is True:
        try:
            return build("imagenet")
        except Exception as error:
            raise RuntimeError(
                f"pretrained=True but the MobileNetV2 ImageNet weights could not be loaded from "
                f"{MOBILENETV2_WEIGHTS_URL} ({error}). Use pretrained=None to fall back to random weights."
            ) from error

    reason = None
    if not (_cached_weights_file(image_size).is_file() or _weights_server_reachable()):
        reason = f"no connection to {urlparse(MOBILENETV2_WEIGHTS_URL).hostname} within {WEIGHTS_PROBE_TIMEOUT_SECONDS:g} s"
    else:
        try:
            return build("imagenet")
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
    warnings.warn(
        f"The MobileNetV2 ImageNet weights could not be downloaded ({reason}); the MobileNetV2 encoder "
        "starts from random weights, so expect results no better than the plain encoder. "
        "Pass pretrained=False to silence this warning.",
        UserWarning,
        stacklevel=4,
    )
    return build(None)


def _cached_weights_file(image_size: int) -> Path:
    """Where ``keras.utils.get_file`` keeps the downloaded no-top weights for this size."""
    rows = image_size if image_size in MOBILENETV2_WEIGHT_SIZES else 224
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return keras_home / "models" / f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"


def _weights_server_reachable(timeout_seconds: float = WEIGHTS_PROBE_TIMEOUT_SECONDS) -> bool:
    """Whether a TCP connection to the weights server opens within ``timeout_seconds``.

    Without this probe, an offline machine can spend minutes in download retries. The probe
    runs in a thread so that a slow name lookup cannot exceed the timeout either.
    """
    host = urlparse(MOBILENETV2_WEIGHTS_URL).hostname
    reachable = threading.Event()

    def probe():
        try:
            with socket.create_connection((host, 443), timeout=timeout_seconds):
                reachable.set()
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_seconds)
    return reachable.is_set()


# --------------------------------------------------------------------------------------------
# Argument checks


def _check_integer(argument: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}; got {argument}={value!r}.")


def _check_divisible(image_size: int, depth: int) -> None:
    """Each of the ``depth`` poolings halves the image, so its side must divide by ``2**depth``."""
    step = 2**depth
    if image_size % step == 0:
        return
    below = image_size // step * step
    above = below + step
    nearest = f"{below} or {above}" if below > 0 else f"{above}"
    plural = "sizes" if below > 0 else "size"
    raise ValueError(
        f"image_size={image_size} is not divisible by 2**{depth}={step}; nearest valid {plural}: {nearest} "
        f"(the encoder halves the image {depth} times, and the decoder must double it back exactly)."
    )
