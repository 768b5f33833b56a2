"""Measure the input pipeline: images per second delivered at training time, as one JSON line.

    python bench/pipeline.py                 # quick profile (128 px), the whole training split
    python bench/pipeline.py --image-size 160 --batch-size 32 --epochs 5

Decoding, resizing and caching happen in the first pass; augmentation (random zoom, crop, flip,
colour jitter), batching and prefetching happen in every pass. The steady-state figure is what
training sees from the second epoch on; compare it with the model's training images/s
(``bench/quality.py`` prints ``images_per_s``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from unet_clustering import config, data


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile", default=None, help="smoke, quick or full (default: $UNET_PROFILE or quick)"
    )
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--epochs", type=int, default=4, help="passes over the training split (the first fills the cache)"
    )
    arguments = parser.parse_args()
    if arguments.epochs < 2:
        parser.error("--epochs must be at least 2: the first pass only fills the cache")

    # Progress (tfds, Keras) goes to stderr; stdout carries only the JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        profile = config.get_profile(arguments.profile)
        datasets = data.make_datasets(
            profile, image_size=arguments.image_size, batch_size=arguments.batch_size
        )
        measured = data.measure_throughput(datasets.train, epochs=arguments.epochs)
    print(
        json.dumps(
            {
                "benchmark": "pipeline",
                "profile": profile.name,
                "image_size": datasets.image_size,
                "batch_size": datasets.batch_size,
                "images_per_epoch": measured["images_per_epoch"],
                "first_epoch_images_per_s": round(measured["first_epoch_images_per_s"], 1),
                "images_per_s": round(measured["images_per_s"], 1),
                "augment": True,
                "source": datasets.source.kind,
                "cpu_count": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
