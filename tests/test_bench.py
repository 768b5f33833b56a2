"""The benchmark scripts run on a tiny setting and print valid JSON (figures are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script: str, *arguments: str, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout, got {lines}"
    return json.loads(lines[0])


def test_pipeline_bench_prints_images_per_second(bench_env: dict[str, str]) -> None:
    line = run_bench("pipeline.py", "--epochs", "2", env=bench_env)
    assert line["benchmark"] == "pipeline" and line["image_size"] == 64
    assert line["images_per_epoch"] > 0 and line["images_per_s"] > 0


def test_quality_bench_prints_test_metrics_reproducibly(bench_env: dict[str, str]) -> None:
    line = run_bench("quality.py", "--epochs", "1", "--seed", "3", env=bench_env)
    again = run_bench("quality.py", "--epochs", "1", "--seed", "3", env=bench_env)
    timings = {"train_s", "images_per_s"}
    # Same seed on a CPU: the same data order, augmentation, initial weights, hence the same metrics.
    assert {key: value for key, value in line.items() if key not in timings} == {
        key: value for key, value in again.items() if key not in timings
    }
    for key in ("fg_iou", "fg_dice", "pet_dice", "mean_iou", "pixel_accuracy"):
        assert 0.0 <= line[key] <= 1.0, key
    assert set(line["iou_per_class"]) == {"pet", "background", "border"}
    assert line["epochs"] == 1 and line["train_s"] > 0 and line["images_per_s"] > 0
