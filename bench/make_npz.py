"""Write the dataset's train and test splits at one image size into a compressed .npz file.

    python bench/make_npz.py --image-size 128 --output .npz/pets-128.npz
    python bench/make_npz.py --profile smoke --image-size 64 --output /tmp/pets-64.npz

The file is what ``bench/anchors.py --npz`` and ``bench/quality.py --npz`` read, through
``unet_clustering.arrays``, on a machine without TensorFlow (the GPU machine, see
``../shared/GPU.md``): arrays ``train_images`` and ``test_images`` (uint8, ``(N, S, S, 3)``),
``train_masks`` and ``test_masks`` (uint8 class indices 0=pet, 1=background, 2=border,
``(N, S, S)``), ``train_file_names``, ``test_file_names`` and ``image_size``.

Images go through ``data.split_arrays`` (the project's resizing, no augmentation), so they match
the tfds pipelines except for rounding to uint8 (at most 1/510 per channel). The training split
keeps tfds' order, so the last ``validation_fraction`` is the validation set, as in
``data.make_datasets``. The profile's example limits apply (``smoke`` keeps 40 and 16 images).
Prints one JSON line describing the file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from unet_clustering import config, data


def to_uint8_arrays(split: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Float images in [0, 1] to uint8 0..255 (rounded), int32 masks ``(N, S, S, 1)`` to uint8 ``(N, S, S)``."""
    images = np.clip(np.rint(split["image"] * 255.0), 0, 255).astype(np.uint8)
    masks = split["mask"].reshape(split["mask"].shape[:3]).astype(np.uint8)
    return images, masks


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile", default=None, help="smoke, quick or full (default: $UNET_PROFILE or quick)"
    )
    parser.add_argument("--image-size", type=int, default=None, help="default: the profile's")
    parser.add_argument("--output", type=Path, required=True, help="the .npz file to write")
    arguments = parser.parse_args()
    if arguments.image_size is not None and arguments.image_size < 1:
        parser.error(f"--image-size must be a positive number of pixels; got {arguments.image_size}")

    started = time.perf_counter()
    # Progress (tfds) goes to stderr; stdout carries only the JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        profile = config.get_profile(arguments.profile)
        image_size = arguments.image_size or profile.image_size
        arrays: dict[str, np.ndarray] = {"image_size": np.array(image_size)}
        for split in ("train", "test"):
            collected = data.split_arrays(split, profile, image_size=image_size)
            arrays[f"{split}_images"], arrays[f"{split}_masks"] = to_uint8_arrays(collected)
            arrays[f"{split}_file_names"] = np.asarray(collected["file_name"], dtype=str)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        config.atomic_write_bytes(arguments.output, buffer.getvalue())
    print(
        json.dumps(
            {
                "benchmark": "make_npz",
                "output": str(arguments.output),
                "megabytes": round(arguments.output.stat().st_size / 2**20, 1),
                "image_size": image_size,
                "train_images": len(arrays["train_images"]),
                "test_images": len(arrays["test_images"]),
                "profile": profile.name,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
