"""The GPU path: the model and three bench scripts under ``KERAS_BACKEND=jax``, without TensorFlow.

Each script runs in a fresh Python (the backend is chosen at ``import keras``) in which importing
TensorFlow fails, as on the lent GPU machine (see ``bench/RESULTS.md``, section 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unet_clustering import config, unet

pytest.importorskip("jax", reason="the JAX backend needs jax (requirements.txt installs jax[cpu])")

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("no_tensorflow.py")


def run_without_tensorflow(script: str, *arguments: str) -> list[dict]:
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, str(RUNNER), str(ROOT / "bench" / script), *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory) -> Path:
    """A pet-like square on a background, with a border, in the layout of bench/make_npz.py."""
    rng = np.random.default_rng(0)

    def split(count: int) -> tuple[np.ndarray, np.ndarray]:
        images = rng.integers(0, 60, (count, 64, 64, 3), dtype=np.uint8)
        masks = np.ones((count, 64, 64), np.uint8)  # background
        masks[:, 16:48, 16:48] = 2  # border ring
        masks[:, 18:46, 18:46] = 0  # pet
        images[masks == 0] += 150
        return images, masks

    train_images, train_masks = split(24)
    test_images, test_masks = split(8)
    path = tmp_path_factory.mktemp("npz") / "tiny-64.npz"
    np.savez(
        path,
        train_images=train_images,
        train_masks=train_masks,
        test_images=test_images,
        test_masks=test_masks,
    )
    return path


def test_the_unet_trains_and_is_scored_under_jax_without_tensorflow(tiny_npz):
    (line,) = run_without_tensorflow(
        "anchors.py",
        *(
            "--npz",
            str(tiny_npz),
            "--profile",
            "smoke",
            "--epochs",
            "1",
            "--image-size",
            "64",
            "--models",
            "unet",
        ),
    )
    assert line["backend"] == "jax" and line["model"] == "unet"
    assert line["source"].startswith("npz") and line["test_images"] == 8
    # On a CPU the automatic precision is float32; on a GPU it is mixed_bfloat16 (RESULTS.md).
    assert line["precision"] == "float32"
    for key in ("fg_iou", "fg_dice", "mean_iou", "pixel_accuracy"):
        assert 0.0 <= line[key] <= 1.0, key
    assert line["train_images_per_s"] > 0 and line["inference_images_per_s"] > 0


def test_the_quality_bench_trains_both_phases_under_jax_without_tensorflow(tiny_npz, tmp_path):
    # The smoke profile's low-resolution phase is at 32 px: halve the 64 px file by taking every
    # other pixel (masks stay labels).
    with np.load(tiny_npz) as stored:
        halved = {key: stored[key][:, ::2, ::2] for key in stored.files}
    low_res = tmp_path / "tiny-32.npz"
    np.savez(low_res, **halved)
    (line,) = run_without_tensorflow(
        "quality.py",
        *("--npz", str(tiny_npz), "--low-res-npz", str(low_res), "--profile", "smoke", "--seed", "1"),
    )
    assert line["backend"] == "jax" and line["precision"] == "float32"
    assert line["source"] == f"npz {tiny_npz}" and line["augment"] == "standard"
    assert (line["low_res_epochs"], line["low_res_image_size"]) == (1, 32) and line["low_res_train_s"] > 0
    assert line["test_images"] == 8 and line["train_images"] + line["validation_images"] == 24
    for key in ("fg_iou", "fg_dice", "mean_iou", "pixel_accuracy"):
        assert 0.0 <= line[key] <= 1.0, key


def test_throughput_runs_under_jax_without_tensorflow():
    (line,) = run_without_tensorflow("throughput.py", "--quick", "--no-pipeline", "--profile", "smoke")
    assert line["backend"] == "jax" and line["pipeline_images_per_s"] is None
    assert line["train_images_per_s"] > 0 and line["inference_images_per_s"] > 0
    # The same U-Net as under TensorFlow (this process's backend), weight for weight.
    profile = config.get_profile("smoke")
    model = unet.build_unet(
        image_size=line["image_size"], base_filters=profile.base_filters, depth=profile.depth
    )
    assert line["params"] == model.count_params()


def test_the_runner_really_refuses_tensorflow(tmp_path):
    script = tmp_path / "needs_tf.py"
    script.write_text("import tensorflow\n")
    result = subprocess.run(
        [sys.executable, str(RUNNER), str(script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "blocked: no TensorFlow here" in result.stderr
