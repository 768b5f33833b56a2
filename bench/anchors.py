"""Train the project's U-Net and two well-known designs on the same data; print one JSON line per model.

    python bench/anchors.py --profile quick --epochs 3
    python bench/anchors.py --profile full --models unet,keras_io
    KERAS_BACKEND=jax python bench/anchors.py --npz .npz/pets-128.npz --profile full   # no TensorFlow

The models (``--models``, default all three):

* ``unet``: the profile's U-Net (``training.build_for_profile``: its base filters and depth);
* ``keras_io``: the keras.io "U-Net-like" Oxford Pets model (``anchors.build_keras_io_unet``);
* ``tf_tutorial``: the TensorFlow tutorial's MobileNetV2 + pix2pix model
  (``anchors.build_tf_tutorial_unet``); ImageNet weights when they can be loaded, else random ones
  (``encoder_weights`` says which). ``--train-encoder auto`` (the default) freezes the encoder, as
  the tutorial does, when it holds ImageNet weights, and trains it when it holds random ones:
  frozen random features are not the tutorial's design, and its decoder cannot learn from them.
  A trained encoder's batch norms then use the run's momentum (MobileNetV2's own is 0.999);
  ``train_encoder`` in the line says what was done.

Every model gets the same recipe: the same training images, augmentation, image size, epochs and
batch size; ``training.compile_model`` (the profile's loss, AdamW, learning-rate schedule); and
``training.fit`` into a temporary folder, which keeps the epoch with the best validation
foreground IoU. That checkpoint is scored with ``metrics.evaluate`` on the test split, with the
profile's flip test-time augmentation setting. Every epoch is at the full image size: a profile's
low-resolution phase (``training.fit_low_res``) is a recipe choice of the project's U-Net, left out
here so that the designs are compared at equal epochs. Batch-norm momentum: the anchors use the project's
``unet.BATCH_NORM_MOMENTUM`` by default, because a run of a few hundred steps leaves Keras' default
(0.99, what both publications use) with moving statistics far behind the weights;
``--published-batch-norm`` restores 0.99.

Data sources:

* default: ``data.make_datasets`` (tfds; ``$OXFORD_PETS_DIR`` for a local copy), with the project's
  augmentation (random zoom and crop, flip, colour jitter);
* ``--npz PATH`` (written by ``bench/make_npz.py``): arrays ``train_images``, ``train_masks``,
  ``test_images``, ``test_masks`` (uint8 images, uint8 masks 0..2). Neither ``data.py`` nor
  TensorFlow is imported, so this runs under ``KERAS_BACKEND=jax`` on a machine without
  TensorFlow. Batches come from ``arrays.Batches`` (a ``keras.utils.PyDataset``), which augments
  with the same random zoom, crop, flip and colour jitter as the tfds pipelines, in numpy and
  OpenCV, so figures of the two sources are comparable.

Validation is the last ``validation_fraction`` of the training split in both cases, as in
``data.make_datasets``. Figures in each line:

* ``train_images_per_s``: ``FitResult.images_per_s``, training images per second of ``fit``
  including validation, checkpointing and the first epoch's compilation;
* ``inference_images_per_s``: ``model.predict`` over the test images in whole batches of
  ``--batch-size``, after one warm-up batch (which compiles), without test-time augmentation.

Progress goes to stderr; stdout carries only the JSON lines, each printed as its model finishes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from unet_clustering import anchors, arrays, config, metrics, training, unet

MODELS = ("unet", "keras_io", "tf_tutorial")
TFDS_AUGMENTATION = "zoom+crop+flip+colour jitter (data.make_datasets)"
NPZ_AUGMENTATION = "zoom+crop+flip+colour jitter (arrays.Batches)"


@dataclasses.dataclass
class BenchData:
    """Training and validation batches for ``fit``, and the test split as arrays."""

    train: Iterable
    validation: Iterable
    test_images: np.ndarray
    test_masks: np.ndarray
    counts: dict[str, int]
    image_size: int
    source: str
    augment: str


def load_npz(path: Path, profile: config.Profile, seed: int) -> BenchData:
    """The ``.npz`` file's splits (``arrays.make_splits``), augmented as the tfds pipelines are."""
    splits = arrays.make_splits(path, profile, seed)
    return BenchData(
        train=splits.train,
        validation=splits.validation,
        test_images=splits.test_images,
        test_masks=splits.test_masks,
        counts=splits.counts,
        image_size=splits.image_size,
        source=f"npz {path}",
        augment=NPZ_AUGMENTATION,
    )


def load_tfds(profile: config.Profile, seed: int) -> BenchData:
    """The project's own pipelines (``data.make_datasets``); the test split collected as arrays."""
    from unet_clustering import data  # imports TensorFlow: only on this path

    datasets = data.make_datasets(profile, seed=seed)
    test = data.take_arrays(datasets.test)
    return BenchData(
        train=datasets.train,
        validation=datasets.validation,
        test_images=test["image"],
        test_masks=test["mask"],
        counts=datasets.counts,
        image_size=datasets.image_size,
        source=datasets.source.kind,
        augment=TFDS_AUGMENTATION,
    )


def build_model(
    name: str,
    profile: config.Profile,
    num_train: int,
    batch_norm_momentum: float,
    pretrained: bool | None,
    train_encoder: bool | None,
) -> tuple[keras.Model, dict[str, Any]]:
    """A compiled model, and ``{"encoder_weights", "train_encoder"}`` (``None`` for models without encoder).

    ``train_encoder=None`` trains the tf_tutorial encoder only when it starts from random weights.
    """
    details: dict[str, Any] = {"encoder_weights": None, "train_encoder": None}
    if name == "unet":
        return training.build_for_profile(profile, num_train), details
    if name == "keras_io":
        model = anchors.build_keras_io_unet(
            profile.image_size, config.NUM_CLASSES, batch_norm_momentum=batch_norm_momentum
        )
    else:
        model, encoder_weights = anchors.build_tf_tutorial_unet(
            profile.image_size,
            config.NUM_CLASSES,
            pretrained=pretrained,
            batch_norm_momentum=batch_norm_momentum,
        )
        if train_encoder is None:
            train_encoder = encoder_weights == "random"
        if train_encoder:
            encoder = model.get_layer("mobilenetv2_encoder")
            encoder.trainable = True
            for layer in encoder.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.momentum = batch_norm_momentum
        details = {"encoder_weights": encoder_weights, "train_encoder": train_encoder}
    # The same compilation as training.build_for_profile gives the project's U-Net.
    training.compile_model(
        model,
        learning_rate=profile.learning_rate,
        total_steps=math.ceil(num_train / profile.batch_size) * profile.epochs,
        schedule=profile.schedule,
        loss=profile.loss,
    )
    return model, details


def inference_images_per_s(model: keras.Model, images: np.ndarray, batch_size: int) -> float:
    """Images per second of ``model.predict`` in whole batches, after a warm-up batch that compiles."""
    batch_size = min(batch_size, len(images))
    # Whole batches only: a smaller last batch would be compiled anew under JAX, inside the timing.
    timed = len(images) // batch_size * batch_size
    model.predict(images[:batch_size], batch_size=batch_size, verbose=0)
    started = time.perf_counter()
    model.predict(images[:timed], batch_size=batch_size, verbose=0)
    return timed / (time.perf_counter() - started)


def run_model(
    name: str, profile: config.Profile, bench_data: BenchData, arguments: argparse.Namespace, seed: int
) -> dict[str, Any]:
    """Train, select, evaluate and time one model; return its JSON line as a dictionary."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    if isinstance(bench_data.train, arrays.Batches):
        # Each model sees the same order and the same random transforms, epoch for epoch.
        bench_data.train.restart()
    momentum = anchors.PUBLISHED_BATCH_NORM_MOMENTUM if arguments.published_batch_norm else None
    momentum = momentum or unet.BATCH_NORM_MOMENTUM
    model, details = build_model(
        name, profile, bench_data.counts["train"], momentum, arguments.pretrained, arguments.train_encoder
    )
    result, best = training.fit_and_load(
        model,
        bench_data.train,
        bench_data.validation,
        epochs=profile.epochs,
        num_train_examples=bench_data.counts["train"],
        image_size=profile.image_size,
        seed=seed,
    )
    scores = metrics.evaluate(
        best,
        (bench_data.test_images, bench_data.test_masks),
        tta_flip=profile.tta_flip,
        batch_size=profile.batch_size,
    )
    return {
        "benchmark": "anchors",
        "model": name,
        "params": int(best.count_params()),
        "trainable_params": unet.count_parameters(model, trainable_only=True),
        "train_images_per_s": round(result.images_per_s, 1),
        "inference_images_per_s": round(
            inference_images_per_s(best, bench_data.test_images, profile.batch_size), 1
        ),
        "train_s": round(result.train_s, 1),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        **{key: scores[key] for key in ("fg_iou", "fg_dice", "mean_iou", "pixel_accuracy")},
        **details,
        "batch_norm_momentum": unet.BATCH_NORM_MOMENTUM if name == "unet" else momentum,
        "backend": keras.backend.backend(),
        "precision": keras.mixed_precision.global_policy().name,
        "image_size": profile.image_size,
        "batch_size": profile.batch_size,
        "learning_rate": profile.learning_rate,
        "profile": profile.name,
        "tta_flip": profile.tta_flip,
        "train_images": bench_data.counts["train"],
        "test_images": scores["num_images"],
        "source": bench_data.source,
        "augment": bench_data.augment,
    }


def parse_models(text: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(MODELS))
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(
            f"--models must be a comma-separated subset of {','.join(MODELS)}; got {text!r}."
        )
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile", default=None, help="smoke, quick or full (default: $UNET_PROFILE or quick)"
    )
    parser.add_argument("--epochs", type=int, help="override the profile's epochs")
    parser.add_argument(
        "--image-size",
        type=int,
        help="override the profile's image size (a multiple of 32 for tf_tutorial; with --npz, "
        "default: the file's size)",
    )
    parser.add_argument("--batch-size", type=int, help="override the profile's batch size")
    parser.add_argument(
        "--learning-rate", type=float, help="override the profile's peak learning rate (every model gets it)"
    )
    parser.add_argument(
        "--models",
        type=parse_models,
        default=list(MODELS),
        help=f"comma-separated subset of {','.join(MODELS)}",
    )
    parser.add_argument(
        "--npz", type=Path, help="read arrays from this file (bench/make_npz.py) instead of tfds"
    )
    parser.add_argument("--no-tta", action="store_true", help="evaluate without flip test-time augmentation")
    parser.add_argument(
        "--published-batch-norm",
        action="store_true",
        help=f"anchors use batch-norm momentum {anchors.PUBLISHED_BATCH_NORM_MOMENTUM} as published",
    )
    parser.add_argument(
        "--pretrained",
        choices=("auto", "yes", "no"),
        default="auto",
        help="tf_tutorial's ImageNet weights: try them (auto), require them, or start from random ones",
    )
    parser.add_argument(
        "--train-encoder",
        choices=("auto", "yes", "no"),
        default="auto",
        help="train tf_tutorial's encoder: only when its weights are random (auto), always, or never",
    )
    parser.add_argument("--precision", default="auto", help="Keras dtype policy (auto: mixed on a GPU)")
    parser.add_argument("--seed", type=int, default=None)
    arguments = parser.parse_args()
    choices = {"auto": None, "yes": True, "no": False}
    arguments.pretrained = choices[arguments.pretrained]
    arguments.train_encoder = choices[arguments.train_encoder]
    if arguments.npz is not None and not arguments.npz.is_file():
        parser.error(f"--npz {arguments.npz}: no such file")

    image_size = arguments.image_size
    if image_size is None and arguments.npz is not None:
        image_size = arrays.npz_image_size(arguments.npz)
    profile = config.with_overrides(
        config.get_profile(arguments.profile),
        epochs=arguments.epochs,
        image_size=image_size,
        batch_size=arguments.batch_size,
        learning_rate=arguments.learning_rate,
        tta_flip=False if arguments.no_tta else None,
    )
    seed = config.get_seed(arguments.seed)
    print(f"profile: {profile}", file=sys.stderr)
    results = sys.stdout
    # Progress (tfds, Keras) goes to stderr; stdout carries only the JSON lines.
    with contextlib.redirect_stdout(sys.stderr):
        policy = training.configure_precision(arguments.precision)
        print(f"backend {keras.backend.backend()}, precision {policy}")
        if arguments.npz is not None:
            bench_data = load_npz(arguments.npz, profile, seed)
        else:
            bench_data = load_tfds(profile, seed)
        for name in arguments.models:
            print(f"--- {name} ---")
            line = run_model(name, profile, bench_data, arguments, seed)
            print(json.dumps(line), file=results, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
