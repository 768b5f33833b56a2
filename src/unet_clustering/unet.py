"""The U-Net (Ronneberger, Fischer and Brox, 2015), built with the Keras 3 functional API.

Taught in ``02_unet``, where the code below is written and explained. Every stage output has a name
that later code reaches with ``model.get_layer``: ``enc1`` ... ``encD`` (encoder, ``enc_i`` at
``S / 2**(i-1)``), ``bottleneck`` (``S / 2**D``), ``decD`` ... ``dec1`` (decoder, ``dec_i`` at the
resolution of ``enc_i``) and ``logits`` (float32, no softmax). Only ``keras.layers`` and
``keras.Model`` are used, so the model builds under any Keras backend.
"""

import re
import warnings

import keras

# ---- Exported from notebooks/02_unet.ipynb: edit the notebook, then run `make export`. ----
#: Batch norm's moving averages follow about the last 1 / (1 - momentum) steps. Keras' 0.99 would lag far
#: behind the weights when an epoch of a few hundred images is only a few dozen steps.
BATCH_NORM_MOMENTUM = 0.9


def conv_block(x, filters, name):
    """Two 3x3 convolutions, each with batch normalisation and ReLU; the last ReLU is named `name`."""
    for index in (1, 2):
        x = keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=f"{name}_conv{index}",
        )(x)
        x = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_bn{index}")(x)
        x = keras.layers.ReLU(name=name if index == 2 else f"{name}_relu{index}")(x)
    return x


def decoder(x, skips, base_filters):
    """From the bottleneck back to full resolution: upsample, concatenate the skip, convolve, per stage."""
    for stage in range(len(skips), 0, -1):
        filters = base_filters * 2 ** (stage - 1)
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"dec{stage}_up")(x)
        x = keras.layers.Concatenate(name=f"dec{stage}_concat")([x, skips[stage - 1]])
        x = conv_block(x, filters, name=f"dec{stage}")
    return x


def build_unet(image_size=128, num_classes=3, base_filters=32, depth=4, name="unet"):
    """An uncompiled U-Net: images (batch, S, S, 3) in [0, 1] to logits (batch, S, S, num_classes)."""
    step = 2**depth
    if image_size % step:
        nearest = sorted({max(step, image_size // step * step), image_size // step * step + step})
        raise ValueError(
            f"image_size={image_size} is not divisible by 2**{depth}={step}, so the decoder cannot double the "
            f"encoder's halvings back exactly; nearest valid sizes: {nearest}."
        )
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x, skips = inputs, []
    for stage in range(1, depth + 1):
        x = conv_block(x, base_filters * 2 ** (stage - 1), name=f"enc{stage}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = conv_block(x, base_filters * 2**depth, name="bottleneck")
    x = decoder(x, skips, base_filters)
    # float32 logits even under mixed precision, so that the softmax and the loss stay accurate.
    logits = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def stage_names(model):
    """The stage outputs of a U-Net, from input to output: enc1 ... bottleneck ... dec1."""
    names = [layer.name for layer in model.layers]
    encoder = sorted(
        (name for name in names if re.fullmatch(r"enc\d+", name)), key=lambda name: int(name[3:])
    )
    decoder = sorted(
        (name for name in names if re.fullmatch(r"dec\d+", name)), key=lambda name: -int(name[3:])
    )
    return [*encoder, *(["bottleneck"] if "bottleneck" in names else []), *decoder]


#: MobileNetV2 layers whose outputs become enc2 ... enc5 (at 1/2 ... 1/16 of the image side) and the bottleneck (1/32).
MOBILENET_TAPS = (
    "block_1_expand_relu",
    "block_3_expand_relu",
    "block_6_expand_relu",
    "block_13_expand_relu",
    "block_16_project",
)


def build_mobilenet_unet(image_size=128, num_classes=3, base_filters=32, weights="imagenet"):
    """A U-Net whose encoder is MobileNetV2 (ImageNet weights where they download, else random)."""
    if image_size % 32 or image_size < 32:
        raise ValueError(
            f"image_size={image_size}: MobileNetV2 halves the image 5 times, so use a multiple of 32."
        )
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    scaled = keras.layers.Rescaling(2.0, offset=-1.0, name="rescale")(inputs)  # MobileNetV2 expects [-1, 1]
    shape = (image_size, image_size, 3)
    try:
        backbone = keras.applications.MobileNetV2(input_shape=shape, include_top=False, weights=weights)
    except Exception as error:  # offline, the weights cannot download
        warnings.warn(
            f"MobileNetV2 starts from random weights: its {weights} weights did not load ({error}).",
            stacklevel=2,
        )
        backbone = keras.applications.MobileNetV2(input_shape=shape, include_top=False, weights=None)
    taps = keras.Model(
        backbone.input, [backbone.get_layer(name).output for name in MOBILENET_TAPS], name="mobilenetv2"
    )
    *deep, bottom = taps(scaled)
    # enc1 is the image itself, so that the decoder still has a full-resolution skip.
    skips = [
        keras.layers.Identity(name=f"enc{stage}")(tensor) for stage, tensor in enumerate([scaled, *deep], 1)
    ]
    x = decoder(keras.layers.Identity(name="bottleneck")(bottom), skips, base_filters)
    logits = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="mobilenet_unet")


# ---- End of the code exported from notebooks/02_unet.ipynb. ----
