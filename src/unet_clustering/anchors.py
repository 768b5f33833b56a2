"""Two well-known segmentation designs for Oxford-IIIT Pet, rebuilt as reference points ("anchors").

Used by ``bench/anchors.py``, which trains them beside the project's own U-Net (``03_training``)
on the same data with the same recipe, so its scores can be read against designs many people
know. Both are written here from their published descriptions:

* :func:`build_keras_io_unet`: the "U-Net-like" model of the keras.io example *Image segmentation
  with a U-Net-like architecture* (Oxford Pets, 160 px): an Xception-style encoder of separable
  convolutions with residual shortcuts, and a decoder of transposed convolutions, again with
  residual shortcuts. It has no skip connections across the "U".
* :func:`build_tf_tutorial_unet`: the model of the TensorFlow tutorial *Image segmentation*: an
  ImageNet MobileNetV2 encoder, frozen, and a pix2pix-style decoder of stride-2 transposed
  convolutions that concatenates the encoder activations of the same resolution.

Both differ from their publications in one way only: they output float32 logits from a layer
named ``logits`` (no softmax), like :func:`unet.build_unet`, so the project's losses, metrics and
evaluation apply unchanged. Their inputs are images in [0, 1], as everywhere in this project.

Only ``keras.layers`` / ``keras.Model`` are used, so both build under any Keras backend.
"""

from __future__ import annotations

import numbers
import warnings

import keras

from unet_clustering import unet
from unet_clustering.config import NUM_CLASSES

#: Keras' own batch-norm momentum, which both publications use.
PUBLISHED_BATCH_NORM_MOMENTUM = 0.99

#: Filters of the keras.io model's three encoder blocks and four decoder blocks.
KERAS_IO_ENTRY_FILTERS = 32
KERAS_IO_ENCODER_FILTERS: tuple[int, ...] = (64, 128, 256)
KERAS_IO_DECODER_FILTERS: tuple[int, ...] = (256, 128, 64, 32)
#: The entry convolution and each encoder block halve the image: 1 + 3 halvings.
KERAS_IO_SIZE_STEP = 2 ** (1 + len(KERAS_IO_ENCODER_FILTERS))

#: Filters of the TensorFlow tutorial's four upsampling blocks, deepest first.
TF_TUTORIAL_DECODER_FILTERS: tuple[int, ...] = (512, 256, 128, 64)
#: MobileNetV2's deepest tapped activation is at 1/32 of the image side.
TF_TUTORIAL_SIZE_STEP = 2**unet.MOBILENETV2_DEPTH
#: pix2pix initialises its convolutions from N(0, 0.02**2).
PIX2PIX_INITIALIZER_STDDEV = 0.02

#: Text of ``unet._load_mobilenetv2``'s warning when it falls back to random weights.
_RANDOM_WEIGHTS_WARNING_TEXT = "starts from random weights"


def build_keras_io_unet(
    image_size: int = 160,
    num_classes: int = NUM_CLASSES,
    batch_norm_momentum: float = PUBLISHED_BATCH_NORM_MOMENTUM,
) -> keras.Model:
    """The keras.io "U-Net-like" Oxford Pets model, mapping images ``(B, S, S, 3)`` in [0, 1] to logits.

    Layout, as published:

    * entry: 3x3 convolution with 32 filters and stride 2, batch norm, ReLU (``S/2``);
    * encoder, for 64, 128, 256 filters: twice (ReLU, 3x3 separable convolution, batch norm), then
      3x3 max pooling with stride 2; a 1x1 convolution with stride 2 of the block's input is added
      to the result (a residual shortcut), so the side halves each block (``S/4``, ``S/8``, ``S/16``);
    * decoder, for 256, 128, 64, 32 filters: twice (ReLU, 3x3 transposed convolution with stride 1,
      batch norm), then 2x upsampling; the block's input, upsampled 2x and passed through a 1x1
      convolution, is added (``S/8`` ... ``S``);
    * output: a 3x3 convolution with ``num_classes`` filters, here float32 logits named ``logits``
      (the publication applies a softmax there).

    With 3 classes it has 2,058,979 parameters whatever the image size. ``image_size`` must be a
    multiple of 16. ``batch_norm_momentum`` defaults to the published (Keras) value; runs of few
    steps may prefer :data:`unet.BATCH_NORM_MOMENTUM` (see ``bench/anchors.py``).

    Returns an uncompiled ``keras.Model`` named ``keras_io_unet``. Benchmarked in ``bench/anchors.py``
    as a reference for the U-Net of ``02_unet``.
    """
    _check_integer("num_classes", num_classes, minimum=2)
    _check_image_size(image_size, KERAS_IO_SIZE_STEP, "the keras.io model halves the image 4 times")
    _check_momentum(batch_norm_momentum)

    def batch_norm(name: str):
        return keras.layers.BatchNormalization(momentum=batch_norm_momentum, name=name)

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    features = keras.layers.Conv2D(KERAS_IO_ENTRY_FILTERS, 3, strides=2, padding="same", name="entry_conv")(
        inputs
    )
    features = batch_norm("entry_bn")(features)
    features = keras.layers.Activation("relu", name="entry_relu")(features)
    block_input = features

    for block, filters in enumerate(KERAS_IO_ENCODER_FILTERS, start=1):
        name = f"down{block}"
        for index in (1, 2):
            # Pre-activation: each separable convolution sees a ReLU of the previous output.
            features = keras.layers.Activation("relu", name=f"{name}_relu{index}")(features)
            features = keras.layers.SeparableConv2D(
                filters, 3, padding="same", name=f"{name}_sepconv{index}"
            )(features)
            features = batch_norm(f"{name}_bn{index}")(features)
        features = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(features)
        shortcut = keras.layers.Conv2D(filters, 1, strides=2, padding="same", name=f"{name}_shortcut")(
            block_input
        )
        features = keras.layers.Add(name=f"{name}_add")([features, shortcut])
        block_input = features

    for block, filters in enumerate(KERAS_IO_DECODER_FILTERS, start=1):
        name = f"up{block}"
        for index in (1, 2):
            features = keras.layers.Activation("relu", name=f"{name}_relu{index}")(features)
            features = keras.layers.Conv2DTranspose(
                filters, 3, padding="same", name=f"{name}_transconv{index}"
            )(features)
            features = batch_norm(f"{name}_bn{index}")(features)
        features = keras.layers.UpSampling2D(2, name=f"{name}_upsample")(features)
        shortcut = keras.layers.UpSampling2D(2, name=f"{name}_shortcut_upsample")(block_input)
        shortcut = keras.layers.Conv2D(filters, 1, padding="same", name=f"{name}_shortcut")(shortcut)
        features = keras.layers.Add(name=f"{name}_add")([features, shortcut])
        block_input = features

    # float32 even under a mixed-precision policy, so the softmax and loss stay accurate.
    logits = keras.layers.Conv2D(num_classes, 3, padding="same", dtype="float32", name="logits")(features)
    return keras.Model(inputs, logits, name="keras_io_unet")


def build_tf_tutorial_unet(
    image_size: int = 128,
    num_classes: int = NUM_CLASSES,
    pretrained: bool | None = None,
    train_encoder: bool = False,
    batch_norm_momentum: float = PUBLISHED_BATCH_NORM_MOMENTUM,
) -> tuple[keras.Model, str]:
    """The TensorFlow segmentation tutorial's model: a MobileNetV2 encoder and a pix2pix decoder.

    Layout, as published:

    * the input, images in [0, 1], is rescaled to [-1, 1] (layer ``rescale``), the range MobileNetV2
      was trained on, and fed to a sub-model ``mobilenetv2_encoder`` that returns the activations
      of :data:`unet.MOBILENETV2_SKIP_LAYERS` (``S/2`` ... ``S/16``) and of
      :data:`unet.MOBILENETV2_BOTTLENECK_LAYER` (``S/32``);
    * the encoder is frozen (``train_encoder=False``), as in the tutorial: only the decoder learns,
      and the encoder's batch norms keep their ImageNet statistics;
    * four pix2pix upsampling blocks (3x3 transposed convolution with stride 2 and no bias, batch
      norm, ReLU) with 512, 256, 128 and 64 filters, each followed by concatenation with the
      encoder activation of the same resolution, deepest first;
    * a last 3x3 transposed convolution with stride 2 back to ``S``, with ``num_classes`` filters:
      float32 logits named ``logits``.

    ``pretrained`` works as in :func:`unet.build_unet`: ``None`` tries the ImageNet weights and falls
    back to random ones with a warning (quickly, when offline); ``True`` requires them; ``False``
    never tries. ``image_size`` must be a multiple of 32.

    Returns ``(model, encoder_weights)``: an uncompiled ``keras.Model`` named ``tf_tutorial_unet``
    and ``"imagenet"`` or ``"random"``, the weights its encoder actually starts from. Benchmarked
    in ``bench/anchors.py`` as a reference for the U-Net of ``02_unet``.
    """
    _check_integer("num_classes", num_classes, minimum=2)
    _check_image_size(image_size, TF_TUTORIAL_SIZE_STEP, "MobileNetV2 halves the image 5 times")
    _check_momentum(batch_norm_momentum)
    if pretrained not in (None, True, False):
        raise ValueError(f"pretrained must be None, True or False; got pretrained={pretrained!r}.")
    if not isinstance(train_encoder, bool):
        raise ValueError(f"train_encoder must be True or False; got train_encoder={train_encoder!r}.")

    backbone, encoder_weights = _mobilenetv2_backbone(image_size, pretrained)
    tapped = [
        backbone.get_layer(layer).output
        for layer in (*unet.MOBILENETV2_SKIP_LAYERS, unet.MOBILENETV2_BOTTLENECK_LAYER)
    ]
    encoder = keras.Model(backbone.input, tapped, name="mobilenetv2_encoder")
    encoder.trainable = train_encoder

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    # MobileNetV2 was trained on pixels in [-1, 1]; our images are in [0, 1].
    rescaled = keras.layers.Rescaling(scale=2.0, offset=-1.0, name="rescale")(inputs)
    *skips, features = encoder(rescaled)

    initializer = keras.initializers.RandomNormal(mean=0.0, stddev=PIX2PIX_INITIALIZER_STDDEV)
    for block, (filters, skip) in enumerate(
        zip(TF_TUTORIAL_DECODER_FILTERS, reversed(skips), strict=True), start=1
    ):
        name = f"up{block}"
        # No bias: the batch norm's offset that follows replaces it.
        features = keras.layers.Conv2DTranspose(
            filters,
            3,
            strides=2,
            padding="same",
            use_bias=False,
            kernel_initializer=initializer,
            name=f"{name}_transconv",
        )(features)
        features = keras.layers.BatchNormalization(momentum=batch_norm_momentum, name=f"{name}_bn")(features)
        features = keras.layers.ReLU(name=f"{name}_relu")(features)
        features = keras.layers.Concatenate(name=f"{name}_concat")([features, skip])

    logits = keras.layers.Conv2DTranspose(
        num_classes, 3, strides=2, padding="same", dtype="float32", name="logits"
    )(features)
    return keras.Model(inputs, logits, name="tf_tutorial_unet"), encoder_weights


def _mobilenetv2_backbone(image_size: int, pretrained: bool | None) -> tuple[keras.Model, str]:
    """``unet._load_mobilenetv2``, plus which weights it ended up with (``"imagenet"`` / ``"random"``)."""
    if pretrained is False:
        return unet._load_mobilenetv2(image_size, False), "random"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backbone = unet._load_mobilenetv2(image_size, pretrained)
    fell_back = False
    for warning in caught:
        fell_back = fell_back or _RANDOM_WEIGHTS_WARNING_TEXT in str(warning.message)
        # Recording swallowed the warnings; the caller should still see them.
        warnings.warn(warning.message, stacklevel=3)
    return backbone, "random" if fell_back else "imagenet"


def _check_integer(argument: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}; got {argument}={value!r}.")


def _check_image_size(image_size: int, step: int, why: str) -> None:
    _check_integer("image_size", image_size, minimum=step)
    if image_size % step:
        below = image_size // step * step
        raise ValueError(
            f"image_size must be a multiple of {step} ({why}); got image_size={image_size}. "
            f"Nearest valid sizes: {below} or {below + step}."
        )


def _check_momentum(batch_norm_momentum: float) -> None:
    valid = isinstance(batch_norm_momentum, numbers.Real) and not isinstance(batch_norm_momentum, bool)
    if not valid or not 0.0 <= batch_norm_momentum < 1.0:
        raise ValueError(f"batch_norm_momentum must be a number in [0, 1); got {batch_norm_momentum!r}.")
