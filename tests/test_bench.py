"""The bench scripts and the notebook runner run, on the synthetic copy of the dataset, under the smoke profile."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image
from synthetic_pets import GOOD_TEST, GOOD_TRAIN

from unet_clustering import unet

ROOT = Path(__file__).resolve().parents[1]


def run(command: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_counts_the_flops_of_each_convolution_by_hand():
    throughput = load(ROOT / "bench" / "throughput.py")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8 pixels * 9 * 3 * 4 multiply-adds
    x = keras.layers.Conv2DTranspose(2, 2, strides=2)(x)  # 8*8 inputs * 4 * 4 * 2
    model = keras.Model(inputs, x)
    assert throughput.forward_gflops(model) == pytest.approx(
        2 * (8 * 8 * 9 * 3 * 4 + 8 * 8 * 4 * 4 * 2) / 1e9
    )


def test_throughput_quick_reports_rates_flops_and_the_cpu(bench_env):
    finished = run([sys.executable, "bench/throughput.py", "--quick"], bench_env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    (line,) = json_lines(finished.stdout)
    assert line["train_images_per_s"] > 0 and line["inference_images_per_s"] > 0
    assert line["train_gflops_per_image"] == pytest.approx(3 * line["forward_gflops_per_image"], rel=1e-2)
    assert line["cpu_flags"] and line["precision"] == "float32"


def test_quality_runs_notebook_03_and_prints_its_test_scores(bench_env, tmp_path):
    artifacts = tmp_path / "run"
    command = [
        sys.executable,
        "bench/quality.py",
        "--profile",
        "smoke",
        "--artifacts",
        str(artifacts),
        "--seed",
        "3",
    ]
    finished = run(command, bench_env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    (line,) = json_lines(finished.stdout)
    assert line["recipe"]["seed"] == 3 and line["recipe"]["name"] == "smoke"
    assert 0.0 <= line["test"]["fg_iou"] <= 1.0 and line["test"]["num_images"] == line["counts"]["test"]
    # The smoke profile's budget of 32 images, in epochs of this split's training images.
    assert (
        line["recipe"]["epochs"] == max(1, round(32 / line["counts"]["train"])) and line["resumed"] is False
    )
    assert (artifacts / "03_training.ipynb").exists() and (artifacts / "unet.keras").exists()
    # Progress goes to stderr: one line per epoch.
    assert f"Epoch 1/{line['recipe']['epochs']}" in finished.stderr


def test_quality_reports_a_failing_notebook_in_one_line(bench_env, tmp_path):
    finished = run([sys.executable, "bench/quality.py", "--profile", "smoke", "--epochs", "0"], bench_env)
    assert finished.returncode == 1
    assert finished.stderr.strip().splitlines()[-1].startswith("error: notebook 03 failed: AssertionError")


def test_the_runner_prints_one_line_per_notebook_and_keeps_kernel_noise_out(bench_env, tmp_path):
    output = tmp_path / "executed"
    finished = run(
        [sys.executable, "tools/run_notebooks.py", "notebooks/02_unet.ipynb", "--output-dir", str(output)],
        bench_env,
    )
    assert finished.returncode == 0, finished.stdout[-3000:]
    lines = finished.stdout.splitlines()
    assert lines[0].startswith("Running 1 notebook(s) with the 'smoke' profile")
    assert lines[1] == "- 02_unet.ipynb ..." and lines[2].startswith("  done in")
    assert "TCP" not in finished.stdout + finished.stderr and "cuda" not in finished.stdout.lower()
    assert (output / "02_unet.ipynb").exists()


def test_the_runner_describes_training_progress_with_the_time_left():
    runner = load(ROOT / "tools" / "run_notebooks.py")
    line = runner.TrainingProgress.describe("full-size", 5, 20, 12.0)
    assert line == "    full-size epoch 5/20, 12.0 s each, about 3.0 min left in this phase"
    assert runner.TrainingProgress.describe("low-resolution", 1, 80, None) == "    low-resolution epoch 1/80"


def test_realtime_prints_latency_speed_and_quality_of_keras_and_the_litert_files(bench_env, tmp_path):
    model_path = tmp_path / "unet.keras"
    keras.utils.set_random_seed(0)
    unet.build_unet(image_size=64, base_filters=4, depth=2).save(model_path)
    command = [sys.executable, "bench/realtime.py", "--quick", "--model", str(model_path), "--threads", "1"]
    finished = run(command, bench_env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    records = json_lines(finished.stdout)
    assert [record["variant"] for record in records] == [
        "Keras",
        "LiteRT float32",
        "LiteRT float16",
        "LiteRT int8",
    ]
    for record in records:
        assert 0 < record["median_ms"] <= record["p95_ms"] and record["frames_per_s"] > 0
        assert record["camera_frames_per_s"] > 0 and 0.0 <= record["fg_iou"] <= 1.0
        assert 0 < record["test_images"] <= 4 and record["image_size"] == 64 and record["threads"] == 1
    # float32 LiteRT computes what Keras computes; the smaller files store the same model in fewer bits.
    assert records[1]["fg_iou_change"] == pytest.approx(0.0, abs=1e-3)
    assert records[3]["bytes"] < records[2]["bytes"] < records[1]["bytes"]
    table = [line for line in finished.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 4 and table[-1].startswith("| LiteRT int8 |")


def semi_supervised_record(
    share: float, seed: int, labels_only: float, clusters: float, self_training: float
):
    scores = {
        "labels only": labels_only,
        "+ cluster pseudo-labels": clusters,
        "+ self-training": self_training,
    }
    return {"profile": "smoke", "labelled_share": share, "seed": seed, "labelled_images": 3, "fg_iou": scores}


def test_pseudo_labels_summarises_means_and_gains_paired_by_seed():
    bench = load(ROOT / "bench" / "pseudo_labels.py")
    records = [
        semi_supervised_record(0.1, 0, 0.50, 0.60, 0.40),
        semi_supervised_record(0.1, 1, 0.70, 0.74, 0.70),
        semi_supervised_record(0.5, 0, 0.80, 0.80, 0.82),
    ]
    first, second = bench.summarise(records)
    assert first["share"] == 0.1 and first["seeds"] == 2 and second["seeds"] == 1
    assert first["labels only"] == pytest.approx((0.60, np.std([0.5, 0.7], ddof=1)))
    # The gains pair each seed with itself: +0.10 and +0.04, whatever the spread between seeds.
    assert first["gain + cluster pseudo-labels"] == pytest.approx((0.07, np.std([0.10, 0.04], ddof=1)))
    assert second["gain + self-training"] == pytest.approx((0.02, 0.0))
    rows = bench.table([first, second]).splitlines()
    assert rows[2].startswith(
        "| 10% (3) | 2 | 0.600 ± 0.141 | 0.670 ± 0.099 | 0.550 ± 0.212 | +0.070 ± 0.042 |"
    )


def test_pseudo_labels_runs_notebook_07_and_resumes_from_its_file(bench_env, tmp_path):
    out, figure = tmp_path / "runs.jsonl", tmp_path / "curve.png"
    command = [
        sys.executable,
        "bench/pseudo_labels.py",
        "--profile",
        "smoke",
        "--shares",
        "0.5",
        "--seeds",
        "3",
    ]
    command += ["--out", str(out), "--figure", str(figure)]
    finished = run(command, bench_env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    (record,) = json_lines(finished.stdout)
    assert record["seed"] == 3 and record["labelled_share"] == 0.5 and record["profile"] == "smoke"
    assert set(record["fg_iou"]) == {
        "teacher (labels only, before)",
        *load(ROOT / "bench" / "pseudo_labels.py").METHODS,
    }
    assert all(0.0 <= value <= 1.0 for value in record["fg_iou"].values())
    assert figure.stat().st_size > 0 and len(out.read_text().splitlines()) == 1
    assert "teacher, on the labelled images" in finished.stderr  # the notebook's output streams to stderr
    again = run(command, bench_env)  # the run is in --out: the notebook does not run again
    assert again.returncode == 0 and json_lines(again.stdout) == [record]
    assert "teacher, on the labelled images" not in again.stderr
    assert len(out.read_text().splitlines()) == 1


def test_binary_masks_writes_a_black_and_white_copy_with_the_official_splits(
    bench_env, pets_folder, tmp_path
):
    copy = tmp_path / "binary"
    command = [sys.executable, "bench/binary_masks.py", "--source", str(pets_folder), "--folder", str(copy)]
    finished = run([*command, "--notebooks"], bench_env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    (header,) = json_lines(finished.stdout)
    train = (copy / "train.txt").read_text().split()
    assert header["train"] == len(train) and header["test"] == len(GOOD_TEST)
    assert set(GOOD_TRAIN) <= set(train) and not {"Abyssinian_64", "Abyssinian_65"} & set(train)  # no file
    for name in GOOD_TRAIN:
        trimap = np.asarray(Image.open(pets_folder / "annotations" / "trimaps" / f"{name}.png"))
        mask = np.asarray(Image.open(copy / "masks" / f"{name}.png"))
        np.testing.assert_array_equal(mask, np.where(trimap == 2, 0, 255))
        assert (copy / "images" / f"{name}.jpg").resolve() == (
            pets_folder / "images" / f"{name}.jpg"
        ).resolve()
