"""Smoke test of bench/clustering.py: ``--quick`` runs and prints one valid JSON line per result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "clustering.py"
COMMON_KEYS = {"bench", "method", "n", "dims", "time_s", "peak_memory_mb", "memory_measure"}
METHODS = {"kmeans", "minibatch_kmeans", "dbscan_subsampled", "hdbscan_subsampled"}


def test_quick_bench_prints_json_lines():
    completed = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    records = [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]
    # Two sizes for each of the four methods, then two sizes of full and sampled silhouette.
    assert len(records) == 2 * 4 + 2 * 2
    for record in records:
        assert COMMON_KEYS <= set(record), record
        assert "error" not in record, record
        assert record["time_s"] >= 0 and record["peak_memory_mb"] >= 0
    assert {record["method"] for record in records} == METHODS | {"silhouette_full", "silhouette_sampled"}
    for record in records:
        if record["method"] in ("kmeans", "minibatch_kmeans"):
            assert record["n_init"] == 1 and record["max_iter"] == 50
        if record["method"] in ("dbscan_subsampled", "hdbscan_subsampled"):
            assert record["n_clusters"] >= 1 and 0 <= record["noise_fraction"] <= 1
        if record["method"].startswith("silhouette"):
            assert -1 <= record["value"] <= 1
    full = {r["n"]: r for r in records if r["method"] == "silhouette_full"}
    sampled = {r["n"]: r for r in records if r["method"] == "silhouette_sampled"}
    for n, record in full.items():
        assert record["sample_size"] == n and sampled[n]["sample_size"] < n


def test_bench_rejects_bad_sizes():
    completed = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", "ten"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2 and "sizes must be" in completed.stderr
