"""Training and inference images per second of the default U-Net, beside the input pipeline's rate.

    python bench/throughput.py                                  # 64, 128, 160 px x batch 8, 16, 32
    python bench/throughput.py --sizes 64,128,160 --batch-sizes 16 --steps 5
    python bench/throughput.py --quick                          # one size, one batch, few steps
    KERAS_BACKEND=jax python bench/throughput.py --no-pipeline  # no TensorFlow needed

For every (image size, batch size) it prints one JSON line:

* ``train_images_per_s``: the profile's U-Net (its ``base_filters`` and ``depth``, compiled by
  ``training.compile_model`` with the profile's loss and metrics) trained with ``train_on_batch``
  on one batch of random images and masks, over ``--steps`` steps after ``--warmup-steps`` steps
  (the first compiles). Random input costs the same as real input: convolutions do not look at
  the values;
* ``inference_images_per_s``: ``predict_on_batch`` on the same batch, timed the same way;
* ``pipeline_images_per_s``: what the project's training pipeline (``data.make_datasets``:
  decoding and caching in the first pass, then augmentation, batching and prefetching) delivers
  at that size and batch, in steady state (``data.measure_throughput`` over
  ``--pipeline-epochs`` passes, the first of which fills the cache). When the dataset or
  TensorFlow is not available, or with ``--no-pipeline``, it is ``null`` and ``pipeline_note``
  says why;
* ``pipeline_to_training_ratio``: pipeline images/s divided by training images/s. Above 1 the
  pipeline keeps up with training; below 1 it is the bottleneck.

The pipeline and the model share the same CPU cores when they run together, so on a CPU the
ratio is an upper bound. Progress goes to stderr; stdout carries only the JSON lines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from typing import Any

import keras
import numpy as np

from unet_clustering import config, training, unet

DEFAULT_SIZES = (64, 128, 160)
DEFAULT_BATCH_SIZES = (8, 16, 32)
QUICK_SIZES = (64,)
QUICK_BATCH_SIZES = (8,)
QUICK_STEPS = 2
QUICK_WARMUP_STEPS = 1


def positive_integers(text: str) -> tuple[int, ...]:
    """Parse ``"64,128"`` into ``(64, 128)``; every value must be a positive integer."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers; got {text!r}")
    return values


def time_steps(step, warmup_steps: int, steps: int) -> float:
    """Seconds taken by ``steps`` calls of ``step()`` after ``warmup_steps`` untimed calls."""
    for _ in range(warmup_steps):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - started


def model_rates(
    profile: config.Profile, image_size: int, batch_size: int, steps: int, warmup_steps: int, seed: int
) -> dict[str, Any]:
    """Training and inference images/s of the profile's U-Net on random input of one size and batch."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = unet.build_unet(
        image_size=image_size,
        num_classes=config.NUM_CLASSES,
        base_filters=profile.base_filters,
        depth=profile.depth,
    )
    training.compile_model(
        model,
        learning_rate=profile.learning_rate,
        total_steps=warmup_steps + steps,
        schedule=profile.schedule,
        loss=profile.loss,
    )
    random = np.random.default_rng(seed)
    images = random.random((batch_size, image_size, image_size, 3), dtype=np.float32)
    masks = random.integers(0, config.NUM_CLASSES, (batch_size, image_size, image_size, 1), dtype=np.int32)
    # Both calls return numpy values, so each step has finished when the call returns.
    train_s = time_steps(lambda: model.train_on_batch(images, masks), warmup_steps, steps)
    predict_s = time_steps(lambda: model.predict_on_batch(images), warmup_steps, steps)
    return {
        "params": int(model.count_params()),
        "train_images_per_s": round(steps * batch_size / train_s, 1),
        "inference_images_per_s": round(steps * batch_size / predict_s, 1),
    }


def pipeline_rate(profile: config.Profile, image_size: int, batch_size: int, epochs: int) -> dict[str, Any]:
    """Steady-state images/s of the training pipeline, or ``None`` with a note saying why not."""
    try:
        from unet_clustering import data  # imports TensorFlow
    except ImportError as error:
        return {"pipeline_images_per_s": None, "pipeline_note": f"data.py cannot be imported: {error}"}
    try:
        datasets = data.make_datasets(profile, image_size=image_size, batch_size=batch_size)
    except (data.DatasetUnavailableError, data.LocalSourceError) as error:
        first_line = str(error).splitlines()[0]
        return {"pipeline_images_per_s": None, "pipeline_note": f"dataset unavailable: {first_line}"}
    measured = data.measure_throughput(datasets.train, epochs=epochs)
    return {
        "pipeline_images_per_s": round(measured["images_per_s"], 1),
        "pipeline_first_epoch_images_per_s": round(measured["first_epoch_images_per_s"], 1),
        "pipeline_images_per_epoch": measured["images_per_epoch"],
        "pipeline_note": f"steady state over {epochs - 1} of {epochs} passes ({datasets.source.kind})",
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile", default=None, help="smoke, quick or full (default: $UNET_PROFILE or quick)"
    )
    parser.add_argument("--sizes", type=positive_integers, default=None, help="image sizes, e.g. 64,128,160")
    parser.add_argument(
        "--batch-sizes", type=positive_integers, default=None, help="batch sizes, e.g. 8,16,32"
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first (compilation)")
    parser.add_argument("--pipeline-epochs", type=int, default=3, help="passes over the pipeline (>= 2)")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the input pipeline (no TensorFlow)")
    parser.add_argument("--quick", action="store_true", help="one size, one batch size, a few steps")
    parser.add_argument("--precision", default="auto", help="Keras dtype policy (auto: mixed on a GPU)")
    parser.add_argument("--seed", type=int, default=None)
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.steps, arguments.warmup_steps, arguments.pipeline_epochs = (
            QUICK_STEPS,
            QUICK_WARMUP_STEPS,
            2,
        )
    sizes = arguments.sizes or (QUICK_SIZES if arguments.quick else DEFAULT_SIZES)
    batch_sizes = arguments.batch_sizes or (QUICK_BATCH_SIZES if arguments.quick else DEFAULT_BATCH_SIZES)
    if arguments.steps < 1 or arguments.warmup_steps < 1:
        parser.error("--steps and --warmup-steps must be at least 1 (the first step compiles)")
    if arguments.pipeline_epochs < 2:
        parser.error("--pipeline-epochs must be at least 2: the first pass only fills the cache")

    profile = config.get_profile(arguments.profile)
    step = 2**profile.depth
    bad_sizes = [size for size in sizes if size % step]
    if bad_sizes:
        parser.error(
            f"--sizes {bad_sizes}: the {profile.name} U-Net (depth {profile.depth}) needs multiples of {step}"
        )
    seed = config.get_seed(arguments.seed)
    results = sys.stdout
    # Progress (tfds, Keras) goes to stderr; stdout carries only the JSON lines.
    with contextlib.redirect_stdout(sys.stderr):
        policy = training.configure_precision(arguments.precision)
        for image_size in sizes:
            for batch_size in batch_sizes:
                print(f"--- {image_size} px, batch {batch_size} ---")
                rates = model_rates(
                    profile, image_size, batch_size, arguments.steps, arguments.warmup_steps, seed
                )
                if arguments.no_pipeline:
                    pipeline = {"pipeline_images_per_s": None, "pipeline_note": "skipped (--no-pipeline)"}
                else:
                    pipeline = pipeline_rate(profile, image_size, batch_size, arguments.pipeline_epochs)
                ratio = None
                if pipeline["pipeline_images_per_s"] is not None:
                    ratio = round(pipeline["pipeline_images_per_s"] / rates["train_images_per_s"], 2)
                line = {
                    "benchmark": "throughput",
                    "image_size": image_size,
                    "batch_size": batch_size,
                    **rates,
                    **pipeline,
                    "pipeline_to_training_ratio": ratio,
                    "steps": arguments.steps,
                    "warmup_steps": arguments.warmup_steps,
                    "base_filters": profile.base_filters,
                    "depth": profile.depth,
                    "profile": profile.name,
                    "input": "synthetic random images and masks",
                    "backend": keras.backend.backend(),
                    "precision": policy,
                    "accelerators": training.accelerators(),
                    "cpu_count": os.cpu_count(),
                }
                print(json.dumps(line), file=results, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
