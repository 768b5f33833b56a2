"""Cluster per-pixel features, choose the number of clusters, and score clusters against the trimaps.

Taught in ``05_clustering``.

Three families of methods are compared in the notebook:

* k-means (``KMeans``, or ``MiniBatchKMeans`` for many points), with ``k`` chosen by
  :func:`scan_k` and :func:`choose_k`;
* DBSCAN and HDBSCAN, which find the number of clusters themselves and mark outliers as noise
  (label ``-1``). Both need the distances between many pairs of points, so here they are fitted on
  a random subsample and every other point is then given the label of its nearest fitted
  neighbour (:func:`dbscan_subsampled`, :func:`hdbscan_subsampled`);
* the classic colour-clustering baseline on raw RGB or Lab pixels (:func:`colour_features`).

Clusters have arbitrary numbers, so scoring them against the classes (pet, background, border)
first matches clusters to classes (:func:`match_clusters`), then computes the same mean IoU and
pixel accuracy as the supervised U-Net (:func:`score_clusters`).

Only ``numpy``, ``scipy`` and ``scikit-learn`` are used (OpenCV only for the Lab colour space).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import DBSCAN, HDBSCAN, KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_score,
)
from sklearn.neighbors import NearestNeighbors

from unet_clustering import config

#: Above this many points, :func:`kmeans` switches to ``MiniBatchKMeans`` when not told which to
#: use. Full k-means copies the data and passes over every point at every iteration; mini-batch
#: k-means updates the centres from small random batches, so its working memory stays flat
#: (``bench/clustering.py``: about 60 MB against about 490 MB peak for 2 million 32-d points) at the
#: price of a slightly higher inertia. On easy, well-separated data full k-means converges in a
#: few iterations and can even be faster; on overlapping real features it needs many more.
MINIBATCH_THRESHOLD = 50_000

#: Points per mini-batch for ``MiniBatchKMeans`` (larger than scikit-learn's default of 1024 so
#: that each step sees every cluster several times even for k around 10).
MINIBATCH_BATCH_SIZE = 4096

#: Points used by the silhouette score unless a caller asks otherwise: the score compares every
#: pair of points, so its cost grows with the square of this number.
DEFAULT_SILHOUETTE_SAMPLE_SIZE = 2_000

#: Most points allowed in any step that compares all pairs of points (full silhouette, DBSCAN or
#: HDBSCAN without subsampling, k-distance curves). Past it, the time or memory needed is out of
#: reach of a laptop; subsample instead.
MAX_PAIRWISE_POINTS = 50_000

#: Bytes per pair of points when estimating the worst case of a pairwise step (a float64 distance
#: or an int64 neighbour index for every pair, as when DBSCAN's eps covers everything).
PAIRWISE_BYTES_PER_PAIR = 8

#: Points DBSCAN / HDBSCAN are fitted on by default before the rest are assigned.
DEFAULT_SUBSAMPLE_SIZE = 10_000

#: Rules :func:`choose_k` understands.
CHOOSE_K_RULES: tuple[str, ...] = (
    "elbow_silhouette",
    "silhouette",
    "elbow",
    "davies_bouldin",
    "calinski_harabasz",
)

#: Rules :func:`match_clusters` understands.
MATCH_RULES: tuple[str, ...] = ("auto", "hungarian", "majority")

#: Colour spaces :func:`colour_features` understands.
COLOUR_SPACES: tuple[str, ...] = ("rgb", "lab")

#: Label scikit-learn gives to noise points.
NOISE = -1


class ClusteringMemoryError(MemoryError):
    """A step comparing all pairs of points was asked to run on too many points."""


# --------------------------------------------------------------------------------------------
# Input checks and memory guard
# --------------------------------------------------------------------------------------------


def check_features(features: np.ndarray, name: str = "features") -> np.ndarray:
    """Return ``features`` as a 2-D float array, or raise a ``ValueError`` that says what is wrong.

    Refuses an empty array, anything that is not ``(n_points, n_dims)``, and NaN or infinite values
    (every distance to such a point is undefined).

    Taught in ``05_clustering``.
    """
    array = np.asarray(features)
    if array.ndim != 2:
        hint = " Use features.reshape(-1, 1) for one feature per point." if array.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_points, n_dims); got shape {array.shape}.{hint}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); there is nothing to cluster.")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        bad_rows = int((~finite).any(axis=1).sum())
        raise ValueError(
            f"{name} contains NaN or infinite values in {bad_rows} of {array.shape[0]} rows; "
            "distances to those points are undefined. Drop those rows or fix the features first."
        )
    return array


def _check_k(k: int, num_points: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}.")
    if k > num_points:
        raise ValueError(f"k={k} is more than the {num_points} points to cluster; choose k <= {num_points}.")
    return int(k)


def available_memory_bytes() -> int | None:
    """Memory the system can still hand out, in bytes (``psutil`` if installed, else ``sysconf``).

    Returns ``None`` where neither works (for example, on Windows without ``psutil``).
    """
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def pairwise_memory_bytes(num_points: int) -> int:
    """Worst-case bytes of a step holding one number per pair of points: ``n**2 * 8``."""
    return int(num_points) ** 2 * PAIRWISE_BYTES_PER_PAIR


def check_pairwise_size(num_points: int, what: str) -> None:
    """Refuse (``ClusteringMemoryError``) to run ``what`` on ``num_points`` points if it is unsafe.

    Unsafe means more than :data:`MAX_PAIRWISE_POINTS` points, or a worst case of
    :func:`pairwise_memory_bytes` larger than the memory available now.

    Taught in ``05_clustering``.
    """
    needed = pairwise_memory_bytes(num_points)
    available = available_memory_bytes()
    too_many = num_points > MAX_PAIRWISE_POINTS
    too_big = available is not None and needed > available
    if too_many or too_big:
        available_text = f"{available / 1e9:.1f} GB" if available is not None else "an unknown amount"
        raise ClusteringMemoryError(
            f"Refusing to run {what} on {num_points:,} points: it compares all pairs of points, a worst "
            f"case of {needed / 1e9:.1f} GB with {available_text} available, and the safe limit is "
            f"{MAX_PAIRWISE_POINTS:,} points. Subsample first (pass sample_size=, or use "
            "dbscan_subsampled / hdbscan_subsampled / a silhouette sample_size)."
        )


# --------------------------------------------------------------------------------------------
# k-means and choosing k
# --------------------------------------------------------------------------------------------


#: k-means restarts when clustering whole pets (a few hundred vectors, so restarts cost
#: milliseconds): the run with the lowest inertia is kept, so the split found depends less on
#: where one start happened to fall. Used by ``05_clustering`` and ``bench/segments.py``.
SEGMENT_KMEANS_RESTARTS = 10


def kmeans(
    features: np.ndarray,
    k: int,
    seed: int = config.DEFAULT_SEED,
    minibatch: bool | None = None,
    n_init: int | str = "auto",
    max_iter: int | None = None,
) -> KMeans | MiniBatchKMeans:
    """Fit k-means with ``k`` clusters and return the fitted scikit-learn estimator.

    Args:
        features: ``(n, D)`` finite floats.
        k: number of clusters, ``1 <= k <=`` the number of distinct points.
        seed: ``random_state`` of the estimator.
        minibatch: ``True`` for ``MiniBatchKMeans``, ``False`` for ``KMeans``; ``None`` picks
            ``MiniBatchKMeans`` when ``n`` exceeds :data:`MINIBATCH_THRESHOLD`.
        n_init: restarts from different initial centres (scikit-learn's ``"auto"`` means one
            k-means++ start).
        max_iter: iteration cap; ``None`` keeps scikit-learn's default.

    Returns:
        The fitted estimator; ``.labels_`` holds each point's cluster, ``.inertia_`` the sum of
        squared distances to the centres.

    Raises:
        ValueError: invalid features, or ``k`` larger than the number of points or of distinct
            points (k-means would have to leave clusters empty).

    Taught in ``05_clustering``.
    """
    features = check_features(features)
    k = _check_k(k, features.shape[0])
    use_minibatch = features.shape[0] > MINIBATCH_THRESHOLD if minibatch is None else bool(minibatch)
    options: dict[str, Any] = {"n_clusters": k, "random_state": seed, "n_init": n_init}
    if max_iter is not None:
        options["max_iter"] = int(max_iter)
    if use_minibatch:
        estimator = MiniBatchKMeans(batch_size=MINIBATCH_BATCH_SIZE, **options)
    else:
        estimator = KMeans(**options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(features)
    if len(np.unique(estimator.labels_)) < k:
        # Only now pay for counting distinct rows: an empty cluster is either unavoidable (too
        # few distinct points, a user error) or bad luck of the initialisation (a warning).
        distinct = np.unique(features, axis=0).shape[0]
        if distinct < k:
            raise ValueError(
                f"k={k} is more than the {distinct} distinct points in features, so some clusters "
                f"would be empty; choose k <= {distinct}."
            )
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return estimator


def silhouette(
    features: np.ndarray,
    labels: np.ndarray,
    seed: int = config.DEFAULT_SEED,
    sample_size: int | None = DEFAULT_SILHOUETTE_SAMPLE_SIZE,
) -> float:
    """Mean silhouette of ``labels`` on ``features``, estimated on at most ``sample_size`` points.

    Calls ``sklearn.metrics.silhouette_score`` with ``sample_size=min(n, sample_size)`` and
    ``random_state=seed``. ``sample_size=None`` asks for the exact score on every point, which
    costs ``n**2`` distances and is refused (``ClusteringMemoryError``) past
    :data:`MAX_PAIRWISE_POINTS`. Noise labels (``-1``) count as one more cluster.

    Returns ``nan`` where the score is undefined: fewer than 2 clusters, or as many clusters as
    points, in the (sampled) points.

    Taught in ``05_clustering``.
    """
    features = check_features(features)
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != features.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries but features has {features.shape[0]} rows.")
    num_points = features.shape[0]
    used = num_points if sample_size is None else min(num_points, int(sample_size))
    if sample_size is not None and used < 1:
        raise ValueError(f"sample_size must be positive or None; got {sample_size!r}.")
    check_pairwise_size(used, "the silhouette score")
    num_clusters = len(np.unique(labels))
    if num_clusters < 2 or num_clusters >= num_points:
        return float("nan")
    try:
        return float(silhouette_score(features, labels, sample_size=used, random_state=seed))
    except ValueError:
        # The sample happened to hold a single cluster (or one point per cluster).
        return float("nan")


def scan_k(
    features: np.ndarray,
    k_values: Sequence[int],
    seed: int = config.DEFAULT_SEED,
    silhouette_sample_size: int = DEFAULT_SILHOUETTE_SAMPLE_SIZE,
    minibatch: bool | None = None,
    n_init: int | str = "auto",
) -> list[dict[str, float]]:
    """Fit k-means for every k in ``k_values`` and measure each clustering.

    Returns one dict per k, in the order given, with:

    * ``k`` and ``inertia`` (sum of squared distances to the centres; always falls as k grows),
    * ``silhouette`` (-1..1, higher is better) on a sample of
      ``min(n, silhouette_sample_size)`` points (see :func:`silhouette`),
    * ``davies_bouldin`` (0 and up, lower is better) and ``calinski_harabasz`` (higher is better),
      both on every point (they cost ``n * k``, not ``n**2``).

    Scores undefined for a clustering (k = 1) are ``nan``.

    Taught in ``05_clustering``.
    """
    features = check_features(features)
    k_values = [int(k) for k in k_values]
    if not k_values:
        raise ValueError("k_values is empty; give at least one k, for example range(2, 9).")
    for k in k_values:
        _check_k(k, features.shape[0])
    results = []
    for k in k_values:
        estimator = kmeans(features, k, seed=seed, minibatch=minibatch, n_init=n_init)
        labels = estimator.labels_
        num_clusters = len(np.unique(labels))
        defined = 2 <= num_clusters < features.shape[0]
        results.append(
            {
                "k": k,
                "inertia": float(estimator.inertia_),
                "silhouette": silhouette(features, labels, seed=seed, sample_size=silhouette_sample_size),
                "davies_bouldin": float(davies_bouldin_score(features, labels)) if defined else float("nan"),
                "calinski_harabasz": float(calinski_harabasz_score(features, labels))
                if defined
                else float("nan"),
            }
        )
    return results


def _knee_index(x_values: np.ndarray, y_values: np.ndarray) -> int | None:
    """Index of the point farthest below the straight line joining the curve's two ends.

    Both axes are first scaled to [0, 1] so that the units of x and y do not matter (the
    "kneedle" idea). Works for a falling curve that flattens (the k-means elbow) and a rising
    curve that shoots up (the k-distance knee). Returns ``None`` when no point lies below the
    line (a straight or bulging curve has no knee).
    """
    x_values = np.asarray(x_values, dtype=np.float64)
    y_values = np.asarray(y_values, dtype=np.float64)
    x_span = x_values[-1] - x_values[0]
    y_span = y_values.max() - y_values.min()
    if x_span == 0 or y_span == 0:
        return None
    x_scaled = (x_values - x_values[0]) / x_span
    y_scaled = (y_values - y_values.min()) / y_span
    chord = y_scaled[0] + (y_scaled[-1] - y_scaled[0]) * x_scaled
    below = chord - y_scaled
    best = int(np.argmax(below))
    return best if below[best] > 1e-12 else None


def elbow_k(k_values: Sequence[int], inertias: Sequence[float]) -> int:
    """The k at the elbow of the inertia curve.

    The elbow is the point farthest below the straight line joining the first and last points
    of the curve, after scaling both axes to [0, 1]: past it, more clusters buy little. Needs at
    least three k values; a curve without a bend (a straight line) gives the smallest k.

    Taught in ``05_clustering``.
    """
    k_array = np.asarray(k_values, dtype=np.float64)
    inertia_array = np.asarray(inertias, dtype=np.float64)
    if k_array.shape != inertia_array.shape or k_array.ndim != 1:
        raise ValueError(
            f"k_values and inertias must be equal-length lists; got {k_array.shape} and {inertia_array.shape}."
        )
    if k_array.size < 3:
        raise ValueError(f"elbow_k needs at least 3 k values to see a bend; got {k_array.size}.")
    if not np.isfinite(inertia_array).all():
        raise ValueError("inertias contains NaN or infinite values.")
    order = np.argsort(k_array, kind="stable")
    k_array, inertia_array = k_array[order], inertia_array[order]
    knee = _knee_index(k_array, inertia_array)
    return int(k_array[0] if knee is None else k_array[knee])


def choose_k(scan: Sequence[dict[str, float]], rule: str = "elbow_silhouette") -> int:
    """Pick k from the output of :func:`scan_k`.

    Rules:

    * ``"elbow_silhouette"`` (default): the k with the best silhouette among the elbow's k and
      its neighbours in the scan (one step either side). The elbow alone says where adding
      clusters stops paying but is sensitive to the range scanned; the silhouette alone often
      prefers k = 2 (two big, well-separated groups). Together: a k where inertia has levelled
      off whose clusters are also the best separated nearby. With fewer than 3 k values (no
      elbow) it falls back to the silhouette rule.
    * ``"silhouette"``: highest silhouette.
    * ``"elbow"``: :func:`elbow_k` on the inertias.
    * ``"davies_bouldin"``: lowest Davies-Bouldin index.
    * ``"calinski_harabasz"``: highest Calinski-Harabasz index.

    Ties go to the smaller k. ``nan`` scores are ignored; if a rule has no defined score at all,
    a ``ValueError`` says so.

    Taught in ``05_clustering``.
    """
    if rule not in CHOOSE_K_RULES:
        raise ValueError(f"rule={rule!r} is not supported; choose one of {CHOOSE_K_RULES}.")
    if not scan:
        raise ValueError("scan is empty; run scan_k first.")
    rows = sorted(scan, key=lambda row: row["k"])
    k_values = [int(row["k"]) for row in rows]

    def best(metric: str, candidates: list[dict[str, float]], larger_is_better: bool) -> int:
        scored = [row for row in candidates if np.isfinite(row[metric])]
        if not scored:
            raise ValueError(
                f"No k in the scan has a defined {metric} (it needs at least 2 clusters); scan k >= 2."
            )
        sign = 1.0 if larger_is_better else -1.0
        # max() keeps the first of equal scores, and rows are sorted by k: ties go to the smaller k.
        return int(max(scored, key=lambda row: sign * row[metric])["k"])

    if rule == "silhouette" or (rule == "elbow_silhouette" and len(rows) < 3):
        return best("silhouette", rows, larger_is_better=True)
    if rule == "davies_bouldin":
        return best("davies_bouldin", rows, larger_is_better=False)
    if rule == "calinski_harabasz":
        return best("calinski_harabasz", rows, larger_is_better=True)
    elbow = elbow_k(k_values, [row["inertia"] for row in rows])
    if rule == "elbow":
        return elbow
    position = k_values.index(elbow)
    neighbours = rows[max(0, position - 1) : position + 2]
    if not any(np.isfinite(row["silhouette"]) for row in neighbours):
        return elbow
    return best("silhouette", neighbours, larger_is_better=True)


# --------------------------------------------------------------------------------------------
# DBSCAN and HDBSCAN on a subsample
# --------------------------------------------------------------------------------------------


def k_distance(features: np.ndarray, min_samples: int) -> np.ndarray:
    """Each point's distance to its ``min_samples``-th nearest neighbour, sorted ascending.

    The point itself counts as its first neighbour, as in ``sklearn.cluster.DBSCAN``: a point is a
    core point for ``eps`` exactly when its value here is ``<= eps``. Plot the curve and read eps
    at its knee (:func:`eps_from_k_distance`). Refused past :data:`MAX_PAIRWISE_POINTS` points.

    Taught in ``05_clustering``.
    """
    features = check_features(features)
    if isinstance(min_samples, bool) or int(min_samples) < 1:
        raise ValueError(f"min_samples must be a positive integer; got {min_samples!r}.")
    min_samples = int(min_samples)
    if min_samples > features.shape[0]:
        raise ValueError(f"min_samples={min_samples} is more than the {features.shape[0]} points.")
    check_pairwise_size(features.shape[0], "the k-distance curve")
    distances, _ = NearestNeighbors(n_neighbors=min_samples).fit(features).kneighbors(features)
    return np.sort(distances[:, -1])


def eps_from_k_distance(distances: np.ndarray) -> float:
    """Choose DBSCAN's eps at the knee of a k-distance curve.

    The knee is the point farthest below the straight line joining the curve's ends, after
    scaling both axes to [0, 1] (the same rule as :func:`elbow_k`): below it, distances grow
    slowly (points inside clusters); above it, they shoot up (outliers). A curve with no knee
    (straight, or bulging upwards) gives its median instead, which makes half the points core
    points.

    Raises ``ValueError`` for an empty curve, NaN values, or a curve of zeros (all points
    identical: any positive eps puts them in one cluster).

    Taught in ``05_clustering``.
    """
    distances = np.sort(np.asarray(distances, dtype=np.float64).reshape(-1))
    if distances.size == 0:
        raise ValueError("distances is empty; compute it with k_distance(features, min_samples).")
    if not np.isfinite(distances).all() or distances.min() < 0:
        raise ValueError("distances must be finite and non-negative.")
    if distances[-1] == 0:
        raise ValueError(
            "Every k-distance is 0: the points are identical, so any positive eps gives one cluster."
        )
    knee = _knee_index(np.arange(distances.size, dtype=np.float64), distances)
    chosen = float(np.median(distances)) if knee is None else float(distances[knee])
    # DBSCAN needs eps > 0; a knee at a run of duplicates (distance 0) moves to the smallest positive one.
    return chosen if chosen > 0 else float(distances[distances > 0][0])


@dataclasses.dataclass
class SubsampledClustering:
    """Result of :func:`dbscan_subsampled` / :func:`hdbscan_subsampled`.

    ``labels`` covers every input point (``-1`` is noise); ``sample_indices`` are the points the
    estimator was fitted on; ``eps`` is the DBSCAN radius used (``None`` for HDBSCAN).
    """

    labels: np.ndarray
    sample_indices: np.ndarray
    estimator: Any
    method: str
    eps: float | None = None

    @property
    def n_clusters(self) -> int:
        """Number of clusters found, noise not counted."""
        return int(len(np.unique(self.labels[self.labels != NOISE])))

    @property
    def noise_fraction(self) -> float:
        """Fraction of all points labelled noise."""
        return float(np.mean(self.labels == NOISE))


def _subsample(num_points: int, sample_size: int, seed: int) -> np.ndarray:
    if isinstance(sample_size, bool) or int(sample_size) < 1:
        raise ValueError(f"sample_size must be a positive integer; got {sample_size!r}.")
    if sample_size >= num_points:
        return np.arange(num_points)
    return np.sort(np.random.default_rng(seed).choice(num_points, size=int(sample_size), replace=False))


def dbscan_subsampled(
    features: np.ndarray,
    eps: float | None = None,
    min_samples: int = 10,
    sample_size: int = DEFAULT_SUBSAMPLE_SIZE,
    seed: int = config.DEFAULT_SEED,
) -> SubsampledClustering:
    """DBSCAN fitted on a random subsample, extended to every point.

    1. Draw ``min(n, sample_size)`` points (seeded) and fit ``DBSCAN(eps, min_samples)`` on them.
       ``eps=None`` takes the knee of the sample's k-distance curve (:func:`eps_from_k_distance`).
       A subsample is sparser than the full data, so eps should be read from the sample's curve.
    2. Every other point joins the cluster of its nearest *core* sample point if that point is
       within ``eps`` (the rule DBSCAN itself uses for border points); otherwise it is noise (-1).

    The fit compares all pairs of sampled points, so ``sample_size`` above
    :data:`MAX_PAIRWISE_POINTS` is refused. If no sample point is a core point, every label is -1.

    Taught in ``05_clustering``.
    """
    features = check_features(features)
    if isinstance(min_samples, bool) or int(min_samples) < 1:
        raise ValueError(f"min_samples must be a positive integer; got {min_samples!r}.")
    sample_indices = _subsample(features.shape[0], sample_size, seed)
    check_pairwise_size(sample_indices.size, "DBSCAN")
    sample = features[sample_indices]
    if eps is None:
        eps = eps_from_k_distance(k_distance(sample, min(int(min_samples), sample.shape[0])))
    if not eps > 0:
        raise ValueError(f"eps must be positive; got {eps!r}.")
    estimator = DBSCAN(eps=float(eps), min_samples=int(min_samples)).fit(sample)

    labels = np.full(features.shape[0], NOISE, dtype=np.int64)
    labels[sample_indices] = estimator.labels_
    rest = np.setdiff1d(np.arange(features.shape[0]), sample_indices, assume_unique=True)
    core = estimator.core_sample_indices_
    if rest.size and core.size:
        search = NearestNeighbors(n_neighbors=1).fit(sample[core])
        distances, nearest = search.kneighbors(features[rest])
        near_enough = distances[:, 0] <= eps
        labels[rest[near_enough]] = estimator.labels_[core[nearest[near_enough, 0]]]
    return SubsampledClustering(labels, sample_indices, estimator, "dbscan", float(eps))


def hdbscan_subsampled(
    features: np.ndarray,
    min_cluster_size: int = 50,
    sample_size: int = DEFAULT_SUBSAMPLE_SIZE,
    seed: int = config.DEFAULT_SEED,
    min_samples: int | None = None,
) -> SubsampledClustering:
    """HDBSCAN (``sklearn.cluster.HDBSCAN``) fitted on a random subsample, extended to every point.

    Every point outside the sample copies the label of its nearest sample point, noise included:
    HDBSCAN has no single radius, and a point whose nearest fitted neighbour is noise lies in a
    sparse region, so it stays noise (-1) too. ``sample_size`` above :data:`MAX_PAIRWISE_POINTS`
    is refused.

    Taught in ``05_clustering``.
    """
    features = check_features(features)
    if isinstance(min_cluster_size, bool) or int(min_cluster_size) < 2:
        raise ValueError(f"min_cluster_size must be an integer >= 2; got {min_cluster_size!r}.")
    sample_indices = _subsample(features.shape[0], sample_size, seed)
    check_pairwise_size(sample_indices.size, "HDBSCAN")
    sample = features[sample_indices]
    if sample.shape[0] < int(min_cluster_size):
        raise ValueError(
            f"min_cluster_size={min_cluster_size} is more than the {sample.shape[0]} sampled points."
        )
    estimator = HDBSCAN(
        min_cluster_size=int(min_cluster_size),
        min_samples=None if min_samples is None else int(min_samples),
        copy=True,
    ).fit(sample)

    labels = np.full(features.shape[0], NOISE, dtype=np.int64)
    labels[sample_indices] = estimator.labels_
    rest = np.setdiff1d(np.arange(features.shape[0]), sample_indices, assume_unique=True)
    if rest.size:
        _, nearest = NearestNeighbors(n_neighbors=1).fit(sample).kneighbors(features[rest])
        labels[rest] = estimator.labels_[nearest[:, 0]]
    return SubsampledClustering(labels, sample_indices, estimator, "hdbscan", None)


# --------------------------------------------------------------------------------------------
# Scoring clusters against the classes
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ClusterMatch:
    """How clusters were matched to classes by :func:`match_clusters`.

    Attributes:
        rule: ``"hungarian"`` (one-to-one) or ``"majority"`` (many-to-one).
        mapping: cluster id -> class index, for every matched cluster.
        predicted: ``(n,)`` class per point; ``-1`` for noise and for clusters left unmatched
            (both count as wrong).
        cluster_ids: the cluster ids found (noise excluded), in increasing order.
        contingency: ``(len(cluster_ids), num_classes)`` counts of points per cluster and class.
    """

    rule: str
    mapping: dict[int, int]
    predicted: np.ndarray
    cluster_ids: np.ndarray
    contingency: np.ndarray

    @property
    def unmatched_clusters(self) -> list[int]:
        """Cluster ids that no class was given to (Hungarian with more clusters than classes)."""
        return [int(cluster) for cluster in self.cluster_ids if int(cluster) not in self.mapping]


def _flat_labels(
    cluster_labels: np.ndarray, true_labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    clusters = np.asarray(cluster_labels).reshape(-1)
    truth = np.asarray(true_labels).reshape(-1)
    if clusters.shape != truth.shape:
        raise ValueError(
            f"cluster_labels has {clusters.size} entries but true_labels has {truth.size}; they must match "
            "(masks of shape (B, H, W) or (B, H, W, 1) are flattened)."
        )
    if clusters.size == 0:
        raise ValueError("cluster_labels is empty; there is nothing to score.")
    for name, values in (("cluster_labels", clusters), ("true_labels", truth)):
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{name} must hold integers; got dtype {values.dtype}.")
    if clusters.min() < NOISE:
        raise ValueError(f"cluster_labels must be >= -1 (-1 is noise); found {clusters.min()}.")
    if truth.min() < 0 or truth.max() >= num_classes:
        raise ValueError(
            f"true_labels must be class indices in [0, {num_classes - 1}]; found {truth.min()}..{truth.max()}."
        )
    return clusters.astype(np.int64), truth.astype(np.int64)


def match_clusters(
    cluster_labels: np.ndarray,
    true_labels: np.ndarray,
    num_classes: int = config.NUM_CLASSES,
    rule: str = "auto",
) -> ClusterMatch:
    """Give each cluster a class so that clusters can be scored like a segmentation.

    * ``"hungarian"``: a one-to-one matching that maximises the number of points whose cluster's
      class is their true class (``scipy.optimize.linear_sum_assignment`` on the contingency
      table). With fewer clusters than classes, some classes get no cluster; with more, the extra
      clusters stay unmatched (their points count as wrong).
    * ``"majority"``: every cluster takes the class most of its points have (several clusters may
      share a class; ties go to the lower class index).
    * ``"auto"`` (default): Hungarian when the number of clusters is at most ``num_classes``,
      majority otherwise, so that over-segmenting (k > 3) is not punished for splitting a class.

    Noise (-1) is never matched and always counts as wrong. ``cluster_labels`` and
    ``true_labels`` may have any shape with the same number of entries.

    Taught in ``05_clustering``.
    """
    if rule not in MATCH_RULES:
        raise ValueError(f"rule={rule!r} is not supported; choose one of {MATCH_RULES}.")
    clusters, truth = _flat_labels(cluster_labels, true_labels, num_classes)
    clustered = clusters != NOISE
    cluster_ids = np.unique(clusters[clustered])
    rows = np.searchsorted(cluster_ids, clusters[clustered])
    contingency = np.bincount(
        rows * num_classes + truth[clustered], minlength=cluster_ids.size * num_classes
    ).reshape(cluster_ids.size, num_classes)

    used_rule = ("hungarian" if cluster_ids.size <= num_classes else "majority") if rule == "auto" else rule
    if used_rule == "hungarian":
        matched_rows, matched_classes = linear_sum_assignment(contingency, maximize=True)
        mapping = {
            int(cluster_ids[row]): int(cls) for row, cls in zip(matched_rows, matched_classes, strict=True)
        }
    else:
        mapping = {int(cluster): int(np.argmax(contingency[row])) for row, cluster in enumerate(cluster_ids)}

    lookup = np.full(cluster_ids.size, NOISE, dtype=np.int64)
    for row, cluster in enumerate(cluster_ids):
        lookup[row] = mapping.get(int(cluster), NOISE)
    predicted = np.full(clusters.shape, NOISE, dtype=np.int64)
    predicted[clustered] = lookup[rows]
    return ClusterMatch(used_rule, mapping, predicted, cluster_ids, contingency)


def score_clusters(
    cluster_labels: np.ndarray,
    true_labels: np.ndarray,
    num_classes: int = config.NUM_CLASSES,
    rule: str = "auto",
) -> dict[str, Any]:
    """Score a clustering against the true classes, after :func:`match_clusters`.

    Returns a JSON-ready dict:

    * ``mean_iou``, ``per_class_iou`` (by class name) and ``pixel_accuracy`` of the matched
      clusters, computed with ``unet_clustering.metrics`` exactly as for the supervised U-Net.
      Noise and points of unmatched clusters count as wrong: they are counted in an extra
      "unassigned" column of the confusion matrix, so they add to their true class's false
      negatives and are never correct. A class absent from both the truth and the matched
      prediction (a class no cluster was matched to, with no pixels) has IoU ``nan`` and is left
      out of the mean.
    * ``ari`` and ``nmi`` (``sklearn.metrics``): agreement of the raw clusters with the classes,
      whatever the matching; 1 is perfect. Noise counts as one more cluster here.
    * ``purity`` (:func:`purity`), ``rule`` and ``mapping`` (cluster id -> class name) of the
      matching, ``n_clusters``, ``noise_fraction``, ``confusion_matrix`` (rows true class, columns
      matched class, assigned points only) and ``unassigned_per_class``.

    Taught in ``05_clustering``.
    """
    # Imported here: metrics loads Keras, which the clustering functions above do not need.
    from unet_clustering import metrics

    match = match_clusters(cluster_labels, true_labels, num_classes=num_classes, rule=rule)
    clusters, truth = _flat_labels(cluster_labels, true_labels, num_classes)
    unassigned_class = num_classes
    predicted = np.where(match.predicted == NOISE, unassigned_class, match.predicted)
    extended = metrics.confusion_matrix(truth, predicted, num_classes=num_classes + 1)
    matrix = extended[:num_classes, :num_classes]
    unassigned = extended[:num_classes, unassigned_class]

    # The unassigned column only adds to the real classes' false negatives, so the first
    # num_classes IoUs of the extended matrix are the IoUs with noise counted as wrong.
    per_class = np.asarray(metrics.iou_per_class(extended))[:num_classes]
    if unassigned.any():
        defined = np.isfinite(per_class)
        mean_iou = float(per_class[defined].mean()) if defined.any() else float("nan")
    else:
        mean_iou = metrics.mean_iou(matrix)
    names = (
        list(config.CLASS_NAMES)
        if num_classes == config.NUM_CLASSES
        else [str(index) for index in range(num_classes)]
    )
    return {
        "mean_iou": float(mean_iou),
        "per_class_iou": {name: float(value) for name, value in zip(names, per_class, strict=True)},
        "pixel_accuracy": float(metrics.pixel_accuracy(extended)),
        "ari": float(adjusted_rand_score(truth, clusters)),
        "nmi": float(normalized_mutual_info_score(truth, clusters)),
        "purity": purity(clusters, truth),
        "rule": match.rule,
        "mapping": {str(cluster): names[cls] for cluster, cls in match.mapping.items()},
        "n_clusters": int(match.cluster_ids.size),
        "noise_fraction": float(np.mean(clusters == NOISE)),
        "confusion_matrix": np.asarray(matrix).tolist(),
        "unassigned_per_class": {name: int(count) for name, count in zip(names, unassigned, strict=True)},
    }


def label_agreement(cluster_labels: np.ndarray, true_labels: np.ndarray) -> dict[str, float]:
    """ARI, NMI and purity of clusters against any integer labels (species, breeds, classes).

    No matching is needed: these compare the two partitions directly. Used for the
    segment-level clustering of pets across images in ``05_clustering``.
    """
    clusters, truth = np.asarray(cluster_labels).reshape(-1), np.asarray(true_labels).reshape(-1)
    if clusters.shape != truth.shape or clusters.size == 0:
        raise ValueError(
            f"need two non-empty label arrays of one length; got {clusters.shape} and {truth.shape}."
        )
    return {
        "ari": float(adjusted_rand_score(truth, clusters)),
        "nmi": float(normalized_mutual_info_score(truth, clusters)),
        "purity": purity(clusters, truth),
    }


def cluster_against(
    vectors: np.ndarray, truth: np.ndarray, seed: int = config.DEFAULT_SEED
) -> tuple[np.ndarray, dict[str, float]] | None:
    """Cluster pets with k-means into as many groups as ``truth`` has labels, and score the result.

    k is the number of distinct labels in ``truth`` (at least 2): 2 for species, the number of
    breeds present for breeds. k-means keeps the best of :data:`SEGMENT_KMEANS_RESTARTS` starts.

    Returns:
        ``(cluster_labels, {"k": k, "ari": ..., "nmi": ..., "purity": ...})`` (see
        :func:`label_agreement`), or ``None`` when there are not more vectors than k.

    Used by ``05_clustering`` and ``bench/segments.py``.
    """
    truth = np.asarray(truth).reshape(-1)
    k = max(2, len(np.unique(truth)))
    if k >= len(vectors):
        return None
    labels = kmeans(vectors, k, seed=seed, n_init=SEGMENT_KMEANS_RESTARTS).labels_
    return labels, {"k": k, **label_agreement(labels, truth)}


def describe_clusters(
    cluster_maps: np.ndarray, masks: np.ndarray, images: np.ndarray
) -> list[dict[str, Any]]:
    """What each cluster of some clustered maps covers, to read what the clusters capture.

    For every cluster id in ``cluster_maps`` ``(N, H, W)``: its share of all pixels, the share of
    its pixels in each true class of ``masks`` ``(N, H, W)`` (the border class is the band along
    the pet's outline, so a border-heavy cluster follows edges), its mean brightness, and its
    mean texture: the absolute Laplacian of the grey image ``images`` ``(N, H, W, 3)`` in [0, 1],
    high on fur and busy backgrounds, low on flat walls and floors. Taught in ``06_visualization``.
    """
    import cv2

    cluster_maps, masks = np.asarray(cluster_maps), np.asarray(masks)
    images = np.asarray(images, dtype=np.float32)
    if masks.ndim == cluster_maps.ndim + 1 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if cluster_maps.shape != masks.shape or images.shape[:-1] != cluster_maps.shape:
        raise ValueError(
            f"cluster_maps {cluster_maps.shape}, masks {masks.shape} and images {images.shape} must "
            "describe the same (N, H, W) pixels."
        )
    grey = images.mean(axis=-1)
    texture = np.stack([np.abs(cv2.Laplacian(image, cv2.CV_32F)) for image in grey])
    rows = []
    for cluster in np.unique(cluster_maps):
        inside = cluster_maps == cluster
        classes = np.bincount(masks[inside].astype(np.int64), minlength=config.NUM_CLASSES)
        rows.append(
            {
                "cluster": int(cluster),
                "share_of_pixels": float(inside.mean()),
                **{
                    name: float(classes[index] / inside.sum())
                    for index, name in enumerate(config.CLASS_NAMES)
                },
                "brightness": float(grey[inside].mean()),
                "texture": float(texture[inside].mean()),
            }
        )
    return rows


def region_colour_features(images: np.ndarray, region_masks: np.ndarray, space: str = "lab") -> np.ndarray:
    """Mean and standard deviation of each colour channel inside each image's region: ``(N, 6)``.

    The colour baseline for clustering whole pets (``05_clustering``): what a pet's coat looks
    like, without any learned features. An empty region falls back to the whole image.
    """
    colours = colour_features(images, space=space, per_image=True)
    regions = np.asarray(region_masks).astype(bool).reshape(colours.shape[0], -1)
    if regions.shape[1] != colours.shape[1]:
        raise ValueError(
            f"region_masks must have one value per pixel of images; got {np.asarray(region_masks).shape}."
        )
    rows = []
    for image_colours, region in zip(colours, regions, strict=True):
        inside = image_colours[region] if region.any() else image_colours
        rows.append(np.concatenate([inside.mean(axis=0), inside.std(axis=0)]))
    return np.stack(rows).astype(np.float32)


def purity(cluster_labels: np.ndarray, true_labels: np.ndarray) -> float:
    """Fraction of points whose cluster's most common class is their own class.

    1.0 means every cluster holds a single class (one cluster per point would also score 1, so
    read it beside the number of clusters). Noise points (-1) count as wrong.

    Taught in ``05_clustering``.
    """
    truth = np.asarray(true_labels).reshape(-1)
    num_classes = int(truth.max()) + 1 if truth.size else 1
    clusters, truth = _flat_labels(cluster_labels, truth, max(num_classes, 1))
    match = match_clusters(clusters, truth, num_classes=max(num_classes, 1), rule="majority")
    return float(match.contingency.max(axis=1).sum() / clusters.size) if match.cluster_ids.size else 0.0


# --------------------------------------------------------------------------------------------
# The colour baseline
# --------------------------------------------------------------------------------------------


def colour_features(images: np.ndarray, space: str = "rgb", per_image: bool = False) -> np.ndarray:
    """Raw pixel colours as features: the classic colour-segmentation baseline.

    Args:
        images: float ``(N, H, W, 3)`` or ``(H, W, 3)`` with values in ``[0, 1]``.
        space: ``"rgb"`` keeps the values; ``"lab"`` converts with OpenCV's
            ``cvtColor(..., COLOR_RGB2LAB)`` on float32 input, giving L in [0, 100] and a, b
            roughly in [-128, 127]. Lab separates lightness from colour, and distances in it are
            closer to perceived colour differences.
        per_image: ``False`` returns ``(N * H * W, 3)``; ``True`` returns ``(N, H * W, 3)``.

    Returns:
        float32 colour features, rows in image then row-major pixel order.

    Taught in ``05_clustering``.
    """
    if space not in COLOUR_SPACES:
        raise ValueError(f"space={space!r} is not supported; choose one of {COLOUR_SPACES}.")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(f"images must be (N, H, W, 3) or (H, W, 3) RGB; got shape {images.shape}.")
    if images.min() < 0 or images.max() > 1:
        raise ValueError(
            f"images must hold values in [0, 1]; found {images.min():.3g}..{images.max():.3g}. "
            "Divide 8-bit images by 255 first."
        )
    if space == "lab":
        import cv2

        images = np.stack([cv2.cvtColor(image, cv2.COLOR_RGB2LAB) for image in images])
    flat = images.reshape(images.shape[0], -1, 3).astype(np.float32, copy=False)
    return flat if per_image else flat.reshape(-1, 3)
