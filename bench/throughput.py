"""Training and inference images per second of a profile's U-Net, its arithmetic, and the pipeline's rate.

    python bench/throughput.py                                   # quick profile: 64 and 128 px, batch 8
    python bench/throughput.py --profile full --sizes 128 --batch-sizes 32 --precision mixed_bfloat16
    python bench/throughput.py --quick                           # one size, few steps (the tests use it)

For every (image size, batch size) it prints one JSON line:

* ``train_images_per_s``: the profile's U-Net, compiled as in ``03_training`` (AdamW, cross-entropy +
  soft Dice, the foreground IoU metric, no XLA on a CPU), trained with ``train_on_batch`` on one batch
  of random images, over ``--steps`` steps after ``--warmup-steps`` (the first traces the graph).
  Convolutions cost the same whatever the pixel values, so random input times like real input;
* ``inference_images_per_s``: ``predict_on_batch`` on the same batch, timed the same way;
* ``forward_gflops_per_image`` and ``train_gflops_per_image``: the multiply-adds of every
  convolution, counted from the layers' shapes (2 FLOPs each); a training step costs about three
  forward passes (the forward pass, and gradients for the inputs and for the weights);
* ``pipeline_images_per_s`` (with ``--pipeline``, which needs the dataset): what ``data.make_datasets``
  delivers for training at that size once its cache is full.

``cpu_flags`` names the vector extensions of this CPU, since speeds differ between CPUs of one kind.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path

import keras
import numpy as np

from unet_clustering import config, metrics, training, unet


def cpu_flags() -> list[str]:
    try:
        return sorted(set(re.findall(r"\bavx[0-9a-z_]*", Path("/proc/cpuinfo").read_text())))
    except OSError:
        return [platform.processor()]


def forward_gflops(model: keras.Model) -> float:
    """Multiply-adds of every convolution of ``model`` for one image, times 2, in GFLOPs."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, height, width, channels = layer.input.shape
            total += height * width * np.prod(layer.kernel_size) * channels * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, _ = layer.output.shape
            total += height * width * np.prod(layer.kernel_size) * layer.input.shape[-1] * layer.filters
    return 2 * float(total) / 1e9


def timed(step, warmup_steps: int, steps: int) -> float:
    for _ in range(warmup_steps):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - started


def model_rates(profile: config.Profile, image_size: int, batch_size: int, steps: tuple[int, int]) -> dict:
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = unet.build_unet(image_size, base_filters=profile.base_filters, depth=profile.depth)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=metrics.ce_dice_loss,
        metrics=[metrics.ForegroundIoU()],
        jit_compile=training.gpu_count() > 0,
    )
    random = np.random.default_rng(0)
    images = random.random((batch_size, image_size, image_size, 3), dtype=np.float32)
    masks = random.integers(
        0, config.OXFORD_PET_CLASSES.num_classes, (batch_size, image_size, image_size, 1)
    ).astype(np.int32)
    train_s = timed(lambda: model.train_on_batch(images, masks), *steps)
    predict_s = timed(lambda: model.predict_on_batch(images), *steps)
    gflops = forward_gflops(model)
    return {
        "train_images_per_s": round(steps[1] * batch_size / train_s, 1),
        "inference_images_per_s": round(steps[1] * batch_size / predict_s, 1),
        "forward_gflops_per_image": round(gflops, 4),
        "train_gflops_per_image": round(3 * gflops, 4),
        "parameters": model.count_params(),
    }


def pipeline_rate(profile: config.Profile, image_size: int, batch_size: int) -> float:
    import dataclasses

    from unet_clustering import data

    sized = dataclasses.replace(profile, batch_size=batch_size)
    train = data.make_datasets(sized, image_size=image_size).train
    for _ in train:  # the first pass decodes, resizes and fills the cache
        pass
    started, count = time.perf_counter(), 0
    for images, _ in train:
        count += int(images.shape[0])
    return round(count / (time.perf_counter() - started), 1)


def integers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=sorted(config.PROFILES), default="quick")
    parser.add_argument("--sizes", type=integers, default=[64, 128])
    parser.add_argument(
        "--batch-sizes", type=integers, default=None, help="default: the profile's batch size"
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--precision", default="float32", help="a Keras dtype policy, e.g. mixed_bfloat16")
    parser.add_argument("--pipeline", action="store_true", help="also time the training pipeline")
    parser.add_argument("--quick", action="store_true", help="one small size and few steps")
    arguments = parser.parse_args(argv)
    profile = config.get_profile(arguments.profile)
    if arguments.quick:
        profile = config.get_profile("smoke")
        arguments.sizes, arguments.steps, arguments.warmup_steps = [profile.image_size], 2, 1
    keras.mixed_precision.set_global_policy(arguments.precision)
    for image_size in arguments.sizes:
        for batch_size in arguments.batch_sizes or [profile.batch_size]:
            line = {
                "profile": profile.name,
                "image_size": image_size,
                "batch_size": batch_size,
                "precision": arguments.precision,
                "backend": keras.backend.backend(),
                "gpus": training.gpu_count(),
                "cpu_flags": cpu_flags(),
                **model_rates(profile, image_size, batch_size, (arguments.warmup_steps, arguments.steps)),
            }
            if arguments.pipeline:
                line["pipeline_images_per_s"] = pipeline_rate(profile, image_size, batch_size)
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
