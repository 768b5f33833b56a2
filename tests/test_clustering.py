"""Tests for unet_clustering.clustering: k-means and choosing k, DBSCAN/HDBSCAN on subsamples,
matching clusters to classes and scoring them, the colour baseline, and the edge cases.

Expected values are worked out by hand in the comments, or computed independently with
scikit-learn directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import DBSCAN, KMeans, MiniBatchKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from unet_clustering import clustering


@pytest.fixture(scope="module")
def four_blobs() -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(
        n_samples=600, centers=4, n_features=3, cluster_std=0.5, center_box=(-10, 10), random_state=0
    )


# ---------------------------------------------------------------------------- k-means and k


def test_scan_and_choose_k_find_the_four_blobs(four_blobs):
    points, _ = four_blobs
    scan = clustering.scan_k(points, range(2, 8), seed=0)
    assert [row["k"] for row in scan] == list(range(2, 8))
    assert set(scan[0]) == {"k", "inertia", "silhouette", "davies_bouldin", "calinski_harabasz"}
    inertias = [row["inertia"] for row in scan]
    assert inertias == sorted(inertias, reverse=True)
    for rule in ("elbow_silhouette", "silhouette", "davies_bouldin", "calinski_harabasz"):
        assert clustering.choose_k(scan, rule=rule) == 4, rule
    # The elbow alone lands one step early here (the drop from k = 2 to 3 dominates the scaled
    # curve); that is why the default rule also looks at the elbow's neighbours.
    assert abs(clustering.choose_k(scan, rule="elbow") - 4) <= 1


def test_kmeans_recovers_the_blobs(four_blobs):
    points, truth = four_blobs
    estimator = clustering.kmeans(points, 4, seed=0)
    assert isinstance(estimator, KMeans)
    assert adjusted_rand_score(truth, estimator.labels_) == 1.0


def test_kmeans_switches_to_minibatch_above_the_threshold(monkeypatch, four_blobs):
    points, _ = four_blobs
    monkeypatch.setattr(clustering, "MINIBATCH_THRESHOLD", 500)
    assert isinstance(clustering.kmeans(points, 4, seed=0), MiniBatchKMeans)  # 600 > 500
    assert isinstance(clustering.kmeans(points[:400], 4, seed=0), KMeans)
    assert not isinstance(clustering.kmeans(points, 4, seed=0, minibatch=False), MiniBatchKMeans)


def test_elbow_by_hand():
    # Scaled: x = 0, .25, .5, .75, 1 and y = (inertia - 6) / 94 = 1, .255, .043, .021, 0. The chord
    # is y = 1 - x, so the gaps below it are 0, .495, .457, .229, 0: the elbow is k = 2.
    assert clustering.elbow_k([1, 2, 3, 4, 5], [100, 30, 10, 8, 6]) == 2
    # Order of the input does not matter.
    assert clustering.elbow_k([5, 3, 1, 2, 4], [6, 10, 100, 30, 8]) == 2
    # A straight line has no elbow: the smallest k.
    assert clustering.elbow_k([2, 3, 4, 5], [40, 30, 20, 10]) == 2
    with pytest.raises(ValueError, match="at least 3"):
        clustering.elbow_k([2, 3], [10, 5])


def hand_scan(silhouettes: dict[int, float]) -> list[dict[str, float]]:
    """A scan whose inertia curve bends at k = 3."""
    inertias = {2: 100.0, 3: 20.0, 4: 15.0, 5: 12.0, 6: 10.0}
    return [
        {
            "k": k,
            "inertia": inertias[k],
            "silhouette": silhouettes[k],
            "davies_bouldin": 1.0 / k,
            "calinski_harabasz": k,
        }
        for k in inertias
    ]


def test_choose_k_rules_on_a_hand_made_scan():
    scan = hand_scan({2: 0.50, 3: 0.55, 4: 0.60, 5: 0.40, 6: 0.70})
    assert clustering.choose_k(scan, "elbow") == 3
    # Best silhouette among the elbow and its neighbours (2, 3, 4) is k = 4, although k = 6 has
    # the best silhouette overall.
    assert clustering.choose_k(scan) == 4
    assert clustering.choose_k(scan, "silhouette") == 6
    assert clustering.choose_k(scan, "davies_bouldin") == 6
    assert clustering.choose_k(scan, "calinski_harabasz") == 6
    with pytest.raises(ValueError, match="rule"):
        clustering.choose_k(scan, "gap")


def test_choose_k_ignores_nan_and_ties_go_to_the_smaller_k():
    scan = hand_scan({2: 0.6, 3: 0.6, 4: float("nan"), 5: 0.1, 6: 0.1})
    assert clustering.choose_k(scan, "silhouette") == 2
    single = [
        {
            "k": 1,
            "inertia": 5.0,
            "silhouette": float("nan"),
            "davies_bouldin": float("nan"),
            "calinski_harabasz": float("nan"),
        }
    ]
    with pytest.raises(ValueError, match="defined silhouette"):
        clustering.choose_k(single, "silhouette")


def test_silhouette_sample_size_is_capped(monkeypatch, four_blobs):
    points, _ = four_blobs
    calls = []
    real = clustering.silhouette_score

    def recording(features, labels, **options):
        calls.append((features.shape[0], options))
        return real(features, labels, **options)

    monkeypatch.setattr(clustering, "silhouette_score", recording)
    clustering.scan_k(points, [2, 3], seed=5, silhouette_sample_size=100)
    assert calls == [(600, {"sample_size": 100, "random_state": 5})] * 2
    calls.clear()
    clustering.scan_k(points[:80], [2], seed=5, silhouette_sample_size=100)
    assert calls == [(80, {"sample_size": 80, "random_state": 5})]


def test_sampled_silhouette_is_close_to_the_full_score(four_blobs):
    points, truth = four_blobs
    full = clustering.silhouette(points, truth, sample_size=None)
    from sklearn.metrics import silhouette_score

    assert full == pytest.approx(silhouette_score(points, truth))
    assert clustering.silhouette(points, truth, seed=0, sample_size=300) == pytest.approx(full, abs=0.05)


# ---------------------------------------------------------------------------- edge cases


def test_k_larger_than_the_distinct_points_is_refused():
    points = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]), 10, axis=0)
    assert len(np.unique(clustering.kmeans(points, 3, seed=0).labels_)) == 3
    with pytest.raises(ValueError, match="3 distinct points"):
        clustering.kmeans(points, 4, seed=0)
    with pytest.raises(ValueError, match="more than the 30 points"):
        clustering.kmeans(points, 31, seed=0)


def test_a_single_point():
    point = np.array([[1.0, 2.0]])
    assert clustering.kmeans(point, 1, seed=0).labels_.tolist() == [0]
    scan = clustering.scan_k(point, [1], seed=0)
    assert np.isnan(scan[0]["silhouette"]) and np.isnan(scan[0]["davies_bouldin"])
    with pytest.raises(ValueError, match="k=2 is more than the 1 points"):
        clustering.kmeans(point, 2, seed=0)


def test_all_identical_features():
    points = np.ones((50, 4))
    assert clustering.kmeans(points, 1, seed=0).inertia_ == 0.0
    with pytest.raises(ValueError, match="1 distinct points"):
        clustering.kmeans(points, 2, seed=0)
    np.testing.assert_array_equal(clustering.k_distance(points, 5), np.zeros(50))
    with pytest.raises(ValueError, match="identical"):
        clustering.eps_from_k_distance(clustering.k_distance(points, 5))
    assert np.isnan(clustering.silhouette(points, np.zeros(50, int)))


def test_k_below_two_has_no_silhouette(four_blobs):
    points, _ = four_blobs
    scan = clustering.scan_k(points, [1, 2], seed=0)
    assert np.isnan(scan[0]["silhouette"]) and np.isfinite(scan[1]["silhouette"])


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_refused(bad_value):
    points = np.random.default_rng(0).normal(size=(20, 3))
    points[4, 1] = bad_value
    for call in (
        lambda: clustering.kmeans(points, 2),
        lambda: clustering.scan_k(points, [2]),
        lambda: clustering.dbscan_subsampled(points, eps=1.0),
        lambda: clustering.hdbscan_subsampled(points, min_cluster_size=5),
        lambda: clustering.k_distance(points, 3),
    ):
        with pytest.raises(ValueError, match="NaN or infinite values in 1 of 20 rows"):
            call()


def test_empty_and_wrongly_shaped_input_is_refused():
    with pytest.raises(ValueError, match="empty"):
        clustering.kmeans(np.zeros((0, 3)), 1)
    with pytest.raises(ValueError, match=r"reshape\(-1, 1\)"):
        clustering.kmeans(np.zeros(10), 1)
    with pytest.raises(ValueError, match="k_values is empty"):
        clustering.scan_k(np.zeros((5, 2)), [])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        clustering.kmeans(np.zeros((5, 2)), 0)


# ---------------------------------------------------------------------------- DBSCAN / HDBSCAN


def test_k_distance_by_hand():
    points = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    # The point itself is the first neighbour, so min_samples=2 is the distance to the nearest other.
    np.testing.assert_array_equal(clustering.k_distance(points, 2), [1, 1, 1, 1, 7])
    np.testing.assert_array_equal(clustering.k_distance(points, 3), [1, 1, 2, 2, 8])
    np.testing.assert_array_equal(clustering.k_distance(points, 1), [0, 0, 0, 0, 0])


def test_eps_at_the_knee_of_a_hand_made_curve():
    curve = [0.1] * 7 + [0.2, 1.0, 2.0]
    # Scaled: x = i / 9, y = (d - 0.1) / 1.9; the chord is y = x. Gaps below it: i = 6: .667,
    # i = 7: .778 - .053 = .725, i = 8: .889 - .474 = .415. The knee is i = 7, eps = 0.2.
    assert clustering.eps_from_k_distance(curve) == pytest.approx(0.2)
    assert clustering.eps_from_k_distance(curve[::-1]) == pytest.approx(0.2)  # sorted first
    # A straight line has no knee: the median.
    assert clustering.eps_from_k_distance([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="empty"):
        clustering.eps_from_k_distance([])


@pytest.fixture(scope="module")
def separated_blobs() -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(
        n_samples=3000, centers=3, n_features=4, cluster_std=0.3, center_box=(-20, 20), random_state=1
    )


def test_dbscan_subsampled_labels_every_point_and_agrees_with_full_dbscan(separated_blobs):
    points, truth = separated_blobs
    full = DBSCAN(eps=1.0, min_samples=5).fit(points).labels_
    result = clustering.dbscan_subsampled(points, eps=1.0, min_samples=5, sample_size=600, seed=0)
    assert result.labels.shape == (3000,)
    assert result.sample_indices.size == 600 and result.n_clusters == 3
    assert result.noise_fraction < 0.01
    assert adjusted_rand_score(full, result.labels) > 0.99
    assert adjusted_rand_score(truth, result.labels) > 0.99


def test_dbscan_subsampled_assigns_by_the_nearest_core_point_within_eps():
    rng = np.random.default_rng(0)
    points = np.concatenate(
        [rng.normal(0, 0.2, (300, 2)), rng.normal(5, 0.2, (300, 2)), [[20.0, 20.0], [2.5, 2.5]]]
    )
    result = clustering.dbscan_subsampled(points, eps=0.5, min_samples=5, sample_size=200, seed=0)
    sample = points[result.sample_indices]
    core = result.estimator.core_sample_indices_
    rest = np.setdiff1d(np.arange(points.shape[0]), result.sample_indices)
    distances, nearest = NearestNeighbors(n_neighbors=1).fit(sample[core]).kneighbors(points[rest])
    expected = np.where(distances[:, 0] <= 0.5, result.estimator.labels_[core[nearest[:, 0]]], -1)
    np.testing.assert_array_equal(result.labels[rest], expected)
    np.testing.assert_array_equal(result.labels[result.sample_indices], result.estimator.labels_)
    # The two far points are noise whether they were sampled or not.
    assert result.labels[-2] == -1 and result.labels[-1] == -1


def test_dbscan_subsampled_chooses_eps_when_not_given(separated_blobs):
    points, truth = separated_blobs
    result = clustering.dbscan_subsampled(points, min_samples=5, sample_size=500, seed=0)
    assert result.eps > 0 and result.n_clusters == 3
    # The knee is a tight radius: some points in the blobs' tails become noise, but no two blobs
    # merge and every clustered point is in its own blob's cluster.
    clustered = result.labels != -1
    assert result.noise_fraction < 0.1
    assert adjusted_rand_score(truth[clustered], result.labels[clustered]) == 1.0


def test_all_noise_dbscan():
    points = np.arange(40, dtype=np.float64).reshape(-1, 1) * 10  # points 10 apart
    result = clustering.dbscan_subsampled(points, eps=1.0, min_samples=3, sample_size=20, seed=0)
    assert (result.labels == -1).all() and result.n_clusters == 0 and result.noise_fraction == 1.0
    scores = clustering.score_clusters(result.labels, np.arange(40) % 3)
    assert scores["pixel_accuracy"] == 0.0 and scores["mean_iou"] == 0.0 and scores["n_clusters"] == 0


def test_hdbscan_subsampled_finds_the_blobs_and_copies_nearest_labels(separated_blobs):
    points, truth = separated_blobs
    result = clustering.hdbscan_subsampled(points, min_cluster_size=20, sample_size=500, seed=0)
    assert result.labels.shape == (3000,) and result.n_clusters == 3 and result.eps is None
    assert adjusted_rand_score(truth, result.labels) > 0.99
    sample = points[result.sample_indices]
    rest = np.setdiff1d(np.arange(points.shape[0]), result.sample_indices)
    _, nearest = NearestNeighbors(n_neighbors=1).fit(sample).kneighbors(points[rest])
    np.testing.assert_array_equal(result.labels[rest], result.estimator.labels_[nearest[:, 0]])


# ---------------------------------------------------------------------------- memory guard


def test_pairwise_steps_refuse_too_many_points(monkeypatch):
    monkeypatch.setattr(clustering, "MAX_PAIRWISE_POINTS", 100)
    points = np.random.default_rng(0).normal(size=(300, 2))
    labels = np.arange(300) % 2
    for call, count in (
        (lambda: clustering.dbscan_subsampled(points, eps=1.0, sample_size=200), "200"),
        (lambda: clustering.hdbscan_subsampled(points, sample_size=200), "200"),
        (lambda: clustering.silhouette(points, labels, sample_size=None), "300"),
        (lambda: clustering.k_distance(points, 3), "300"),
    ):
        with pytest.raises(clustering.ClusteringMemoryError) as caught:
            call()
        message = str(caught.value)
        assert f"on {count} points" in message and "Subsample first" in message and "100 points" in message
    # Within the limit, a subsample is fine.
    assert clustering.dbscan_subsampled(points, eps=1.0, sample_size=100).labels.shape == (300,)
    assert np.isfinite(clustering.silhouette(points, labels, sample_size=100))
    assert issubclass(clustering.ClusteringMemoryError, MemoryError)


def test_memory_estimate_refuses_what_does_not_fit(monkeypatch):
    monkeypatch.setattr(clustering, "available_memory_bytes", lambda: 10_000)
    # 100 points: 100 * 100 pairs * 8 bytes = 80,000 bytes > 10,000 available.
    with pytest.raises(clustering.ClusteringMemoryError, match="0.0 GB available"):
        clustering.check_pairwise_size(100, "DBSCAN")
    clustering.check_pairwise_size(30, "DBSCAN")  # 7,200 bytes: fine
    assert clustering.pairwise_memory_bytes(1000) == 8_000_000


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="needs Linux /proc/meminfo")
def test_available_memory_is_measured():
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    mem_available = int(fields["MemAvailable"].split()[0]) * 1024
    measured = clustering.available_memory_bytes()
    # Both read the same kernel counter (psutil) or free pages (sysconf); they move a little between reads.
    assert measured is not None and 0.25 * mem_available < measured < 4 * mem_available


# ---------------------------------------------------------------------------- matching and scoring


def test_hungarian_matching_of_permuted_labels_is_perfect():
    truth = np.random.default_rng(0).integers(0, 3, size=(4, 8, 8, 1))
    permutation = np.array([2, 0, 1])  # class c became cluster permutation[c]
    clusters = permutation[truth[..., 0]].reshape(-1)
    match = clustering.match_clusters(clusters, truth)
    assert match.rule == "hungarian"
    assert match.mapping == {2: 0, 0: 1, 1: 2}
    np.testing.assert_array_equal(match.predicted, truth.reshape(-1))
    scores = clustering.score_clusters(clusters, truth)
    assert scores["mean_iou"] == 1.0 and scores["pixel_accuracy"] == 1.0
    assert scores["ari"] == pytest.approx(1.0) and scores["nmi"] == pytest.approx(1.0)
    assert scores["purity"] == 1.0
    assert scores["mapping"] == {"2": "pet", "0": "background", "1": "border"}


def test_hungarian_is_one_to_one_where_majority_is_not():
    clusters = np.array([0, 0, 0, 1, 1, 1])
    truth = np.array([0, 0, 0, 0, 0, 1])
    # Contingency: cluster 0 = [3, 0, 0], cluster 1 = [2, 1, 0]. Majority sends both to class 0
    # (5 of 6 right); Hungarian must give cluster 1 another class: class 1 (4 of 6 right).
    hungarian = clustering.score_clusters(clusters, truth)
    assert hungarian["rule"] == "hungarian" and hungarian["mapping"] == {"0": "pet", "1": "background"}
    assert hungarian["pixel_accuracy"] == pytest.approx(4 / 6)
    # IoU pet = 3 / (3 + 2) = 0.6, background = 1 / 3, border absent everywhere (nan, skipped).
    assert hungarian["per_class_iou"]["pet"] == pytest.approx(0.6)
    assert hungarian["per_class_iou"]["background"] == pytest.approx(1 / 3)
    assert np.isnan(hungarian["per_class_iou"]["border"])
    assert hungarian["mean_iou"] == pytest.approx((0.6 + 1 / 3) / 2)
    majority = clustering.score_clusters(clusters, truth, rule="majority")
    assert majority["mapping"] == {"0": "pet", "1": "pet"} and majority["pixel_accuracy"] == pytest.approx(
        5 / 6
    )


def test_majority_rule_for_more_clusters_than_classes_by_hand():
    clusters = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    truth = np.array([0, 0, 1, 1, 1, 2, 2, 0, 2, 1])
    # Clusters: 0 -> [2, 1, 0] class 0; 1 -> [0, 2, 0] class 1; 2 -> [1, 0, 2] class 2;
    # 3 -> [0, 1, 1] a tie, so the lower class 1.
    match = clustering.match_clusters(clusters, truth)
    assert match.rule == "majority"
    assert match.mapping == {0: 0, 1: 1, 2: 2, 3: 1}
    np.testing.assert_array_equal(match.contingency, [[2, 1, 0], [0, 2, 0], [1, 0, 2], [0, 1, 1]])
    scores = clustering.score_clusters(clusters, truth)
    # Predicted [0 0 0 1 1 2 2 2 1 1]: 7 of 10 right. Confusion rows (truth): [2 0 1], [1 3 0], [0 1 2].
    assert scores["confusion_matrix"] == [[2, 0, 1], [1, 3, 0], [0, 1, 2]]
    assert scores["pixel_accuracy"] == pytest.approx(0.7)
    # IoU: 2 / (3 + 3 - 2) = 0.5, 3 / (4 + 4 - 3) = 0.6, 2 / (3 + 3 - 2) = 0.5.
    assert scores["mean_iou"] == pytest.approx(1.6 / 3)
    assert scores["purity"] == pytest.approx(0.7)
    assert clustering.purity(clusters, truth) == pytest.approx(0.7)


def test_a_class_left_without_a_cluster_scores_zero():
    clusters = np.array([0, 0, 0, 5, 5])  # ids need not be contiguous
    truth = np.array([0, 0, 1, 2, 2])
    scores = clustering.score_clusters(clusters, truth)
    assert scores["rule"] == "hungarian" and scores["mapping"] == {"0": "pet", "5": "border"}
    # pet: 2 / (2 + 3 - 2) = 2/3; background: no cluster, IoU 0; border: 2 / 2 = 1.
    assert scores["per_class_iou"] == pytest.approx({"pet": 2 / 3, "background": 0.0, "border": 1.0})
    assert scores["mean_iou"] == pytest.approx(5 / 9)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 5)


def test_unmatched_clusters_under_forced_hungarian_count_as_wrong():
    clusters = np.array([0, 1, 2, 3])
    truth = np.array([0, 1, 2, 2])
    match = clustering.match_clusters(clusters, truth, rule="hungarian")
    assert len(match.mapping) == 3 and len(match.unmatched_clusters) == 1
    assert clustering.score_clusters(clusters, truth, rule="hungarian")["pixel_accuracy"] == pytest.approx(
        0.75
    )


def test_noise_counts_as_wrong():
    clusters = np.array([-1, 0, 0, 1])
    truth = np.array([0, 0, 0, 1])
    scores = clustering.score_clusters(clusters, truth)
    assert scores["pixel_accuracy"] == pytest.approx(3 / 4)
    # pet: TP 2, its noise pixel is a false negative: 2 / (3 + 2 - 2) = 2/3; background: 1.
    assert scores["per_class_iou"]["pet"] == pytest.approx(2 / 3)
    assert scores["mean_iou"] == pytest.approx((2 / 3 + 1) / 2)
    assert scores["noise_fraction"] == 0.25 and scores["unassigned_per_class"]["pet"] == 1
    assert clustering.purity(clusters, truth) == pytest.approx(3 / 4)


def test_scores_without_noise_agree_with_the_metrics_module():
    from unet_clustering import metrics

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 500)
    clusters = np.where(rng.random(500) < 0.8, truth, rng.integers(0, 3, 500))
    scores = clustering.score_clusters(clusters, truth)
    matrix = metrics.confusion_matrix(truth, clustering.match_clusters(clusters, truth).predicted)
    assert scores["mean_iou"] == pytest.approx(metrics.mean_iou(matrix))
    assert scores["pixel_accuracy"] == pytest.approx(metrics.pixel_accuracy(matrix))


def test_matching_refuses_bad_labels():
    with pytest.raises(ValueError, match="must match"):
        clustering.match_clusters(np.zeros(4, int), np.zeros(5, int))
    with pytest.raises(ValueError, match="class indices"):
        clustering.match_clusters(np.zeros(2, int), np.array([0, 3]))
    with pytest.raises(ValueError, match=">= -1"):
        clustering.match_clusters(np.array([0, -2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="empty"):
        clustering.match_clusters(np.zeros(0, int), np.zeros(0, int))
    with pytest.raises(ValueError, match="rule"):
        clustering.match_clusters(np.zeros(2, int), np.zeros(2, int), rule="greedy")


# ---------------------------------------------------------------------------- colour baseline


def test_colour_features_rgb_and_lab():
    images = np.zeros((2, 2, 3, 3), np.float32)
    images[0, 0, 0] = 1.0  # a white pixel
    images[1, 1, 2] = [1.0, 0.0, 0.0]  # a red pixel
    rgb = clustering.colour_features(images)
    assert rgb.shape == (12, 3)
    np.testing.assert_array_equal(rgb[0], [1, 1, 1])
    np.testing.assert_array_equal(rgb[6 + 5], [1, 0, 0])
    lab = clustering.colour_features(images, space="lab", per_image=True)
    assert lab.shape == (2, 6, 3)
    np.testing.assert_allclose(lab[0, 0], [100, 0, 0], atol=0.01)  # white: L = 100, no colour
    np.testing.assert_allclose(lab[0, 1], [0, 0, 0], atol=0.01)  # black
    assert lab[1, 5, 1] > 50  # red has a strongly positive a*
    np.testing.assert_array_equal(clustering.colour_features(images[0]), rgb[:6])


def test_colour_features_refuse_8_bit_images_and_unknown_spaces():
    with pytest.raises(ValueError, match="Divide 8-bit images by 255"):
        clustering.colour_features(np.full((1, 2, 2, 3), 255.0))
    with pytest.raises(ValueError, match="space"):
        clustering.colour_features(np.zeros((1, 2, 2, 3)), space="hsv")


def test_cluster_against_takes_k_from_the_labels_and_finds_separated_groups() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    breeds = np.repeat([0, 1, 5], 20)  # label values need not be 0..k-1
    vectors = centres[np.repeat([0, 1, 2], 20)] + rng.normal(scale=0.5, size=(60, 2))
    labels, score = clustering.cluster_against(vectors, breeds, seed=3)
    assert score["k"] == 3 and len(np.unique(labels)) == 3
    assert score["nmi"] == pytest.approx(1.0) and score["purity"] == pytest.approx(1.0)
    # One label present still splits in two; no more vectors than k gives no result.
    _, single = clustering.cluster_against(vectors, np.zeros(60, int))
    assert single["k"] == 2 and single["nmi"] == pytest.approx(0.0)
    assert clustering.cluster_against(vectors[:3], np.array([0, 1, 5])) is None


def test_label_agreement_is_perfect_for_relabelled_groups_and_low_for_unrelated_ones() -> None:
    species = np.array([0, 0, 0, 1, 1, 1])
    perfect = clustering.label_agreement(np.array([5, 5, 5, 2, 2, 2]), species)
    assert perfect == {"ari": 1.0, "nmi": 1.0, "purity": 1.0}
    # Clusters {0,3}, {1,4}, {2,5} each mix one cat and one dog: purity 3/6, NMI 0.
    mixed = clustering.label_agreement(np.array([0, 1, 2, 0, 1, 2]), species)
    assert mixed["purity"] == 0.5 and mixed["nmi"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="one length"):
        clustering.label_agreement(np.array([0, 1]), species)


def test_describe_clusters_reports_class_mix_brightness_and_texture() -> None:
    # Two 4x4 images: cluster 0 is the flat dark left half (background), cluster 1 the right
    # half, a noisy bright "pet" with its outermost column labelled border.
    cluster_maps = np.zeros((2, 4, 4), int)
    cluster_maps[:, :, 2:] = 1
    masks = np.ones((2, 4, 4), int)
    masks[:, :, 2] = 0
    masks[:, :, 3] = 2
    images = np.zeros((2, 4, 4, 3), np.float32)
    images[:, :, 2:] = 0.8
    images[:, ::2, 3] = 1.0
    rows = {row["cluster"]: row for row in clustering.describe_clusters(cluster_maps, masks, images)}
    assert rows[0]["share_of_pixels"] == 0.5 and rows[0]["background"] == 1.0
    assert rows[1]["pet"] == 0.5 and rows[1]["border"] == 0.5 and rows[1]["background"] == 0.0
    assert rows[0]["brightness"] == 0.0 and rows[1]["brightness"] == pytest.approx((0.8 * 6 + 1.0 * 2) / 8)
    assert rows[1]["texture"] > rows[0]["texture"]
    with pytest.raises(ValueError, match="same"):
        clustering.describe_clusters(cluster_maps, masks[:1], images)


def test_region_colour_features_average_inside_the_region_or_the_whole_image() -> None:
    images = np.zeros((2, 2, 2, 3), np.float32)
    images[0, 0, 0] = [1.0, 0.0, 0.0]  # one red pixel in a black image
    images[1] = 0.5
    regions = np.zeros((2, 2, 2), bool)
    regions[0, 0, :] = True  # the top row of image 0: one red, one black pixel
    rgb = clustering.region_colour_features(images, regions, space="rgb")
    np.testing.assert_allclose(rgb[0], [0.5, 0.0, 0.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(rgb[1], [0.5, 0.5, 0.5, 0.0, 0.0, 0.0])  # empty region: whole image
    with pytest.raises(ValueError, match="one value per pixel"):
        clustering.region_colour_features(images, regions[:, :1])
