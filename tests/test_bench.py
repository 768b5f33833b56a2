"""Every bench/ script runs on a tiny setting and prints JSON lines.

Figures are not asserted (timings vary from machine to machine); keys, counts and the settings
that every line reports are.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from processes import kill_when

ROOT = Path(__file__).resolve().parents[1]
ANCHOR_KEYS = {
    "model",
    "params",
    "train_images_per_s",
    "inference_images_per_s",
    "train_s",
    "epochs",
    "fg_iou",
    "fg_dice",
    "mean_iou",
    "pixel_accuracy",
    "encoder_weights",
    "backend",
    "image_size",
}
THROUGHPUT_KEYS = {
    "image_size",
    "batch_size",
    "params",
    "train_images_per_s",
    "inference_images_per_s",
    "pipeline_images_per_s",
    "pipeline_note",
    "pipeline_to_training_ratio",
    "backend",
}


def run_bench(script: str, *arguments: str, env: dict[str, str], returncode: int = 0) -> list[dict]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == returncode, result.stderr[-2000:]
    if returncode:
        return [{"stderr": result.stderr}]
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def check_anchor_line(line: dict, model: str) -> None:
    assert ANCHOR_KEYS <= set(line), sorted(ANCHOR_KEYS - set(line))
    assert line["model"] == model and line["image_size"] == 64 and line["epochs"] == 1
    for key in ("fg_iou", "fg_dice", "mean_iou", "pixel_accuracy"):
        assert 0.0 <= line[key] <= 1.0, key
    assert line["train_images_per_s"] > 0 and line["inference_images_per_s"] > 0


def test_anchors_bench_trains_the_unet_and_the_keras_io_model_on_tfds(bench_env):
    lines = run_bench(
        "anchors.py", "--epochs", "1", "--models", "unet,keras_io", "--learning-rate", "0.003", env=bench_env
    )
    assert [line["model"] for line in lines] == ["unet", "keras_io"]
    assert [line["learning_rate"] for line in lines] == [0.003, 0.003]
    for line in lines:
        check_anchor_line(line, line["model"])
        assert line["encoder_weights"] is None and line["train_encoder"] is None
        assert line["source"] == "local-folder"
    # The published count of the keras.io model, and the same data for both models.
    assert lines[1]["params"] == 2_058_979
    assert lines[0]["test_images"] == lines[1]["test_images"] > 0
    assert lines[0]["train_images"] == lines[1]["train_images"] > 0


def test_make_npz_then_anchors_bench_reads_it_without_tfds(bench_env, tmp_path):
    npz_path = tmp_path / "pets-64.npz"
    (described,) = run_bench("make_npz.py", "--image-size", "64", "--output", str(npz_path), env=bench_env)
    with np.load(npz_path) as arrays:
        assert arrays["train_images"].dtype == np.uint8 and arrays["train_images"].shape[1:] == (64, 64, 3)
        assert arrays["test_masks"].shape == (described["test_images"], 64, 64)
        assert set(np.unique(arrays["train_masks"])) <= {0, 1, 2}
    lines = run_bench(
        "anchors.py",
        *("--epochs", "1", "--npz", str(npz_path), "--models", "tf_tutorial", "--pretrained", "no"),
        env=bench_env,
    )
    (line,) = lines
    check_anchor_line(line, "tf_tutorial")
    assert line["encoder_weights"] == "random" and line["source"].startswith("npz")
    # Frozen random features are useless, so "auto" trains a randomly initialised encoder.
    assert line["train_encoder"] is True and line["trainable_params"] > 4_660_323
    assert line["test_images"] == described["test_images"]


def test_anchors_bench_rejects_a_wrong_size_for_the_npz(bench_env, tmp_path):
    npz_path = tmp_path / "tiny.npz"
    images = np.zeros((4, 32, 32, 3), np.uint8)
    masks = np.zeros((4, 32, 32), np.uint8)
    np.savez(npz_path, train_images=images, train_masks=masks, test_images=images, test_masks=masks)
    (failure,) = run_bench(
        "anchors.py", "--npz", str(npz_path), "--image-size", "64", env=bench_env, returncode=1
    )
    assert "32 px images" in failure["stderr"] and "make_npz.py --image-size 64" in failure["stderr"]


def test_quality_bench_reads_npz_files_for_both_phases(bench_env, tmp_path):
    files = {}
    for size in (64, 32):  # the smoke profile's size and its low-resolution size
        files[size] = tmp_path / f"pets-{size}.npz"
        run_bench("make_npz.py", "--image-size", str(size), "--output", str(files[size]), env=bench_env)
    line = single_line(
        "quality.py",
        *("--npz", str(files[64]), "--low-res-npz", str(files[32]), "--seed", "3"),
        *("--max-train-examples", "10", "--score-held-out"),
        env=bench_env,
    )
    assert line["source"] == f"npz {files[64]}" and line["backend"] == "tensorflow"
    assert (line["low_res_epochs"], line["low_res_image_size"]) == (1, 32) and line["low_res_train_s"] > 0
    assert line["train_images"] + line["validation_images"] == 10 and line["augment"] == "standard"
    with np.load(files[64]) as stored:
        assert line["test_images"] == len(stored["test_images"])
        assert line["held_out"]["num_images"] == len(stored["train_images"]) - 10
    for key in ("fg_iou", "fg_dice", "mean_iou", "pixel_accuracy"):
        assert 0.0 <= line[key] <= 1.0, key


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--npz", "{missing}"), "no such file"),
        (("--low-res-npz", "{64}"), "--low-res-npz needs --npz"),
        (("--npz", "{64}"), "need --low-res-npz (bench/make_npz.py --image-size 32), or --low-res-epochs 0"),
        (("--npz", "{32}", "--low-res-epochs", "0"), "holds 32 px images but this run needs 64 px"),
        (("--npz", "{64}", "--low-res-npz", "{64}"), "holds 64 px images but this run needs 32 px"),
    ],
)
def test_quality_bench_rejects_npz_files_it_cannot_use(bench_env, tmp_path, arguments, message):
    for side in (64, 32):
        images = np.zeros((4, side, side, 3), np.uint8)
        masks = np.zeros((4, side, side), np.uint8)
        np.savez(
            tmp_path / f"{side}.npz",
            train_images=images,
            train_masks=masks,
            test_images=images,
            test_masks=masks,
        )
    paths = {"{64}": str(tmp_path / "64.npz"), "{32}": str(tmp_path / "32.npz"), "{missing}": "nowhere.npz"}
    (failure,) = run_bench(
        "quality.py", *(paths.get(argument, argument) for argument in arguments), env=bench_env, returncode=2
    )
    assert message in failure["stderr"]


def test_throughput_bench_quick_reports_model_and_pipeline_rates(bench_env):
    (line,) = run_bench("throughput.py", "--quick", env=bench_env)
    assert THROUGHPUT_KEYS <= set(line), sorted(THROUGHPUT_KEYS - set(line))
    assert (line["image_size"], line["batch_size"], line["steps"]) == (64, 8, 2)
    assert line["train_images_per_s"] > 0 and line["inference_images_per_s"] > 0
    assert line["pipeline_images_per_s"] > 0
    ratio = line["pipeline_images_per_s"] / line["train_images_per_s"]
    assert line["pipeline_to_training_ratio"] == pytest.approx(ratio, rel=0.05)


def test_throughput_bench_rejects_sizes_the_unet_cannot_take(bench_env):
    # The smoke U-Net has depth 3, so sizes must be multiples of 8.
    (failure,) = run_bench("throughput.py", "--sizes", "60", env=bench_env, returncode=2)
    assert "multiples of 8" in failure["stderr"]


def single_line(script: str, *arguments: str, env: dict[str, str]) -> dict:
    lines = run_bench(script, *arguments, env=env)
    assert len(lines) == 1, f"expected one JSON line on stdout, got {lines}"
    return lines[0]


def test_pipeline_bench_prints_images_per_second(bench_env: dict[str, str]) -> None:
    line = single_line("pipeline.py", "--epochs", "2", env=bench_env)
    assert line["benchmark"] == "pipeline" and line["image_size"] == 64
    assert line["images_per_epoch"] > 0 and line["images_per_s"] > 0


def test_quality_bench_prints_test_metrics_reproducibly(bench_env: dict[str, str], tmp_path: Path) -> None:
    saved = tmp_path / "best.keras"
    line = single_line(
        "quality.py", "--epochs", "1", "--seed", "3", "--save-model", str(saved), env=bench_env
    )
    again = single_line("quality.py", "--epochs", "1", "--seed", "3", env=bench_env)
    assert line["saved_model"] == str(saved) and again["saved_model"] is None
    assert line["run_dir"] is None and line["resumed"] is False
    fewer = single_line(
        "quality.py",
        *("--epochs", "1", "--max-train-examples", "10", "--score-held-out"),
        *("--augment", "strong", "--weight-decay", "0.01", "--dropout", "0.2", "--upsampling", "bilinear"),
        *("--low-res-epochs", "0"),
        env=bench_env,
    )
    assert fewer["train_images"] + fewer["validation_images"] == 10 and fewer["validation_images"] >= 1
    assert (fewer["augment"], fewer["weight_decay"], fewer["dropout"], fewer["upsampling"]) == (
        "strong",
        0.01,
        0.2,
        "bilinear",
    )
    # Every trainval image after the first 10 is scored, and only those (the smoke profile's
    # limit of 40 is above the synthetic copy's size, so `line` trained on all of them).
    assert fewer["held_out"]["num_images"] == line["train_images"] + line["validation_images"] - 10
    assert 0.0 <= fewer["held_out"]["fg_iou"] <= 1.0
    assert line["held_out"] is None and line["augment"] == "standard" and line["dropout"] == 0.0
    # The smoke profile trains one epoch at 32 px first, as quick does 80 at 64 px; 0 turns that off.
    assert (line["low_res_epochs"], line["low_res_image_size"]) == (1, 32) and line["low_res_train_s"] > 0
    assert line["train_s"] > line["low_res_train_s"]
    assert (
        fewer["low_res_epochs"] == 0
        and fewer["low_res_image_size"] is None
        and fewer["low_res_train_s"] is None
    )
    # The options reach the model: bilinear upsampling's 3x3 convolutions replace the 2x2 transposed ones.
    assert fewer["parameters"] != line["parameters"]
    assert line["train_images"] + line["validation_images"] > 10
    from unet_clustering import training

    assert (
        training.load_trained_model(saved, image_size=line["image_size"]).count_params() == line["parameters"]
    )
    timings = {"train_s", "low_res_train_s", "images_per_s", "saved_model"}
    # Same seed on a CPU: the same data order, augmentation, initial weights, hence the same metrics.
    assert {key: value for key, value in line.items() if key not in timings} == {
        key: value for key, value in again.items() if key not in timings
    }
    for key in ("fg_iou", "fg_dice", "pet_dice", "mean_iou", "pixel_accuracy"):
        assert 0.0 <= line[key] <= 1.0, key
    assert set(line["iou_per_class"]) == {"pet", "background", "border"}
    assert line["epochs"] == 1 and line["train_s"] > 0 and line["images_per_s"] > 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--score-held-out",), "--score-held-out needs --max-train-examples"),
        (("--dropout", "1.0"), "--dropout must be in [0, 1)"),
        (("--augment", "wild"), "invalid choice: 'wild'"),
        (("--low-res-epochs", "-1"), "--low-res-epochs must be 0"),
        (("--low-res-size", "64"), "--low-res-size must be below the image size 64"),
    ],
)
def test_quality_bench_rejects_bad_recipe_options(bench_env, arguments, message) -> None:
    (failure,) = run_bench("quality.py", *arguments, env=bench_env, returncode=2)
    assert message in failure["stderr"]


def test_quality_bench_with_a_run_dir_resumes_a_killed_run(bench_env: dict[str, str], tmp_path: Path) -> None:
    from unet_clustering import training

    run_dir = tmp_path / "run"
    epochs = 6
    command = [
        sys.executable,
        str(ROOT / "bench" / "quality.py"),
        "--epochs",
        str(epochs),
        "--run-dir",
        str(run_dir),
    ]
    backup, history = run_dir / training.BACKUP_FOLDER, run_dir / training.HISTORY_FILE

    def finished_epochs() -> int:
        return max(0, len(history.read_text().splitlines()) - 1) if history.exists() else 0

    kill_when(
        command,
        lambda: backup.is_dir() and any(not entry.name.startswith(".") for entry in backup.iterdir()),
        env=bench_env,
        timeout_s=600,
        cwd=ROOT,
    )
    assert 1 <= finished_epochs() < epochs
    # The full-size epochs had begun, so the low-resolution phase had finished and recorded itself.
    record = run_dir / training.LOW_RES_FOLDER / training.LOW_RES_RECORD_FILE
    recorded = record.stat().st_mtime_ns

    line = single_line("quality.py", "--epochs", str(epochs), "--run-dir", str(run_dir), env=bench_env)
    assert line["resumed"] is True and line["run_dir"] == str(run_dir)
    assert line["epochs"] == epochs
    with history.open(newline="") as stream:
        assert [int(row["epoch"]) for row in csv.DictReader(stream)] == list(range(epochs))
    # The run is complete, so its backup is gone; the best model stays in the folder. The second
    # call reused the finished low-resolution phase instead of training (and recording) it again.
    assert not backup.exists()
    assert record.stat().st_mtime_ns == recorded
    assert (run_dir / training.LOW_RES_FOLDER / training.LOW_RES_WEIGHTS_FILE).exists()
    model = training.load_trained_model(run_dir / training.MODEL_FILE, image_size=line["image_size"])
    assert model.count_params() == line["parameters"]
    for key in ("fg_iou", "fg_dice", "mean_iou", "pixel_accuracy"):
        assert 0.0 <= line[key] <= 1.0, key


def test_segments_bench_scores_every_region_statistic_and_representation(bench_env, tmp_path):
    from unet_clustering import config, features, unet

    profile = config.get_profile("smoke")
    model = unet.build_unet(
        image_size=profile.image_size, base_filters=profile.base_filters, depth=profile.depth
    )
    model.save(tmp_path / "unet.keras")
    lines = run_bench("segments.py", "--model", str(tmp_path / "unet.keras"), "--seeds", "2", env=bench_env)
    representations = [
        features.COLOUR_BASELINE,
        *unet.model_stage_names(model),
        features.ENCODER_REPRESENTATION,
        features.INNER_ENCODER_REPRESENTATION,
        features.ENCODER_REPRESENTATION + features.WITH_COLOUR,
        features.INNER_ENCODER_REPRESENTATION + features.WITH_COLOUR,
    ]
    assert {(line["region"], line["statistics"], line["representation"]) for line in lines} == {
        (region, statistics, name)
        for region in features.SEGMENT_REGIONS
        for statistics in ("mean", "std", "mean+std")
        for name in representations
    }
    assert {line["split"] for line in lines} == {"train"}
    for line in lines:
        assert line["target"] in ("species", "breed") and line["k"] >= 2
        assert 0.0 <= line["nmi_min"] <= line["nmi"] <= line["nmi_max"] <= 1.0
        assert 0.0 <= line["purity"] <= 1.0 and line["images"] > line["k"]
        assert line["skipped"] == 0
    # --skip leaves out the first images, as a model trained on them would need.
    total = lines[0]["images"]
    later = run_bench(
        "segments.py", "--model", str(tmp_path / "unet.keras"), "--seeds", "1", "--skip", "3", env=bench_env
    )
    assert {line["images"] for line in later} == {total - 3} and {line["skipped"] for line in later} == {3}


def test_segments_bench_without_a_model_names_the_notebook(bench_env, tmp_path):
    env = dict(bench_env, UNET_ARTIFACTS_DIR=str(tmp_path / "nothing"))
    (failure,) = run_bench("segments.py", env=env, returncode=2)
    assert "03_training.ipynb" in failure["stderr"] and "Traceback" not in failure["stderr"]
