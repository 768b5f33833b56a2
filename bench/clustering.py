"""How long clustering takes, and how much memory it needs, as the number of points grows.

Prints one JSON line per (method, n):

* ``kmeans`` (full ``KMeans``) and ``minibatch_kmeans`` (``MiniBatchKMeans``), both with
  ``n_init=1`` and ``max_iter`` capped (``--max-iter``, default 50) so that full k-means on 2
  million points finishes in minutes on a 2-core machine; the cap is in every line.
* ``dbscan_subsampled`` and ``hdbscan_subsampled``, as notebook 05 runs them: fitted on
  ``--sample-size`` points, then every point is assigned to its nearest fitted neighbour. DBSCAN's
  eps comes from the knee of the sample's k-distance curve (its time is included).
* ``silhouette_full`` and ``silhouette_sampled`` at small n: the exact O(n^2) score against
  the score on ``--silhouette-sample`` points, with both values, so the error of sampling shows.

Memory: ``peak_memory_mb`` is the ``tracemalloc`` peak of the allocations made during the call
(``tracemalloc.reset_peak`` before each one), which excludes the input data generated beforehand.
``tracemalloc`` sees Python and numpy allocations; memory that C code allocates itself (OpenMP
work buffers) is not counted. Times are wall-clock seconds with tracemalloc running (its overhead
is small here: the work happens in a few large numpy/C calls).

The data are ``--dims``-dimensional float32 Gaussian blobs around 8 random centres (seeded).

Usage::

    python bench/clustering.py                  # n = 10k, 100k, 1M, 2M (several minutes)
    python bench/clustering.py --sizes 10000,50000
    python bench/clustering.py --quick          # tiny sizes, a few seconds (used by the tests)
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.cluster import DBSCAN, HDBSCAN, KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

from unet_clustering.clustering import knee_index

DEFAULT_SIZES = (10_000, 100_000, 1_000_000, 2_000_000)
DEFAULT_SILHOUETTE_SIZES = (2_000, 5_000, 10_000)
QUICK_SIZES = (500, 2_000)
QUICK_SILHOUETTE_SIZES = (300, 600)
QUICK_SAMPLE_SIZE = 400
QUICK_SILHOUETTE_SAMPLE = 200
METHODS = ("kmeans", "minibatch_kmeans", "dbscan_subsampled", "hdbscan_subsampled")
NUM_CENTRES = 8
MEMORY_MEASURE = "tracemalloc peak during the call (Python/numpy allocations; input data excluded)"


def make_data(num_points: int, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 blobs: ``NUM_CENTRES`` centres spread far apart, unit noise around each."""
    rng = np.random.default_rng(seed)
    centres = (rng.standard_normal((NUM_CENTRES, dims)) * 6).astype(np.float32)
    labels = rng.integers(NUM_CENTRES, size=num_points)
    points = centres[labels]
    points += rng.standard_normal((num_points, dims), dtype=np.float32)
    return points, labels


def measure(function: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``function`` and return its extra fields plus ``time_s`` and ``peak_memory_mb``."""
    tracemalloc.reset_peak()
    start_bytes = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    try:
        extra = function()
    except (MemoryError, ValueError) as error:
        extra = {"error": f"{type(error).__name__}: {error}"}
    elapsed = time.perf_counter() - start
    peak_bytes = tracemalloc.get_traced_memory()[1] - start_bytes
    return {"time_s": round(elapsed, 4), "peak_memory_mb": round(peak_bytes / 2**20, 2), **extra}


def kmeans_work(method: str, points: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    estimator_class = MiniBatchKMeans if method == "minibatch_kmeans" else KMeans
    options = {"batch_size": 4096} if method == "minibatch_kmeans" else {}
    estimator = estimator_class(
        NUM_CENTRES, n_init=1, max_iter=args.max_iter, random_state=args.seed, **options
    )
    estimator.fit(points)
    return {
        "k": NUM_CENTRES,
        "n_init": 1,
        "max_iter": args.max_iter,
        "inertia": float(estimator.inertia_),
        # Lloyd iterations for KMeans; mini-batch steps for MiniBatchKMeans.
        "n_iter": int(estimator.n_iter_),
        "n_steps": int(getattr(estimator, "n_steps_", estimator.n_iter_)),
    }


def density_work(method: str, points: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """As in notebook 05: fit on a subsample, then give every point its nearest fitted neighbour's label.

    DBSCAN's eps is read at the knee of the subsample's k-distance curve (its time is included).
    """
    rng = np.random.default_rng(args.seed)
    sample = points[rng.choice(len(points), size=min(len(points), args.sample_size), replace=False)]
    extra = {}
    if method == "dbscan_subsampled":
        distances = np.sort(NearestNeighbors(n_neighbors=10).fit(sample).kneighbors(sample)[0][:, -1])
        knee = knee_index(np.arange(len(distances)), distances)
        extra["eps"] = float(distances[knee] if knee is not None else np.median(distances))
        estimator = DBSCAN(eps=extra["eps"], min_samples=10)
    else:
        estimator = HDBSCAN(min_cluster_size=args.min_cluster_size, copy=True)
    fitted = estimator.fit(sample).labels_
    nearest = NearestNeighbors(n_neighbors=1).fit(sample).kneighbors(points, return_distance=False)[:, 0]
    labels = fitted[nearest]
    return {
        "sample_size": len(sample),
        **extra,
        "n_clusters": len(np.unique(labels[labels != -1])),
        "noise_fraction": round(float(np.mean(labels == -1)), 4),
    }


def run_method(method: str, points: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    work = kmeans_work if method.endswith("kmeans") else density_work
    return measure(functools.partial(work, method, points, args))


def silhouette_work(
    points: np.ndarray, labels: np.ndarray, seed: int, sample_size: int | None
) -> dict[str, Any]:
    value = silhouette_score(points, labels, sample_size=sample_size, random_state=seed)
    used = points.shape[0] if sample_size is None else min(points.shape[0], sample_size)
    return {"value": float(value), "sample_size": used}


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(float(part)) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"sizes must be comma-separated integers, e.g. 10000,100000: {error}"
        ) from error
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive integers; got {text!r}.")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=None, help="comma-separated n for the methods")
    parser.add_argument("--silhouette-sizes", type=parse_sizes, default=None, help="comma-separated n")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in seconds")
    parser.add_argument("--dims", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-iter", type=int, default=50, help="k-means iteration cap")
    parser.add_argument("--sample-size", type=int, default=10_000)
    parser.add_argument("--min-cluster-size", type=int, default=50, help="HDBSCAN min_cluster_size")
    parser.add_argument("--silhouette-sample", type=int, default=2_000)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.methods.split(",")) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {METHODS}")
    args.methods = tuple(args.methods.split(","))
    if args.quick:
        args.sizes = args.sizes or QUICK_SIZES
        args.silhouette_sizes = args.silhouette_sizes or QUICK_SILHOUETTE_SIZES
        args.sample_size = min(args.sample_size, QUICK_SAMPLE_SIZE)
        args.silhouette_sample = min(args.silhouette_sample, QUICK_SILHOUETTE_SAMPLE)
        args.min_cluster_size = min(args.min_cluster_size, 20)
    args.sizes = args.sizes or DEFAULT_SIZES
    args.silhouette_sizes = args.silhouette_sizes or DEFAULT_SILHOUETTE_SIZES
    return args


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tracemalloc.start()
    common = {"bench": "clustering", "dims": args.dims, "memory_measure": MEMORY_MEASURE}
    for num_points in args.sizes:
        points, _ = make_data(num_points, args.dims, args.seed)
        for method in args.methods:
            emit({**common, "method": method, "n": num_points, **run_method(method, points, args)})
        del points
    for num_points in args.silhouette_sizes:
        points, labels = make_data(num_points, args.dims, args.seed)
        for method, sample_size in (
            ("silhouette_full", None),
            ("silhouette_sampled", args.silhouette_sample),
        ):
            work = functools.partial(silhouette_work, points, labels, args.seed, sample_size)
            emit({**common, "method": method, "n": num_points, **measure(work)})
    tracemalloc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
