"""clustering.py: the knee of a curve, matching clusters to classes, and scoring clusters."""

from __future__ import annotations

import numpy as np
import pytest

from unet_clustering import clustering, metrics

# ---------------------------------------------------------------------------- knee_index


def test_the_elbow_of_a_falling_inertia_curve_by_hand() -> None:
    # Scaled: x = 0, .25, .5, .75, 1 and y = (inertia - 6) / 94 = 1, .255, .043, .021, 0. The chord is
    # y = 1 - x, so the gaps below it are 0, .495, .457, .229, 0: the elbow is index 1 (k = 2).
    assert clustering.knee_index([1, 2, 3, 4, 5], [100, 30, 10, 8, 6]) == 1
    # Scaling either axis does not move it.
    assert clustering.knee_index([10, 20, 30, 40, 50], [1.00, 0.30, 0.10, 0.08, 0.06]) == 1


def test_the_knee_of_a_rising_k_distance_curve_by_hand() -> None:
    curve = [0.1] * 7 + [0.2, 1.0, 2.0]
    # Scaled: x = i / 9, y = (d - 0.1) / 1.9; the chord is y = x. Gaps below it: i = 6: .667,
    # i = 7: .778 - .053 = .725, i = 8: .889 - .474 = .415. The knee is i = 7.
    assert clustering.knee_index(np.arange(10), curve) == 7


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([2, 3, 4, 5], [40, 30, 20, 10]),  # a straight line
        ([0, 1, 2, 3], [0, 1, 2, 3]),  # a rising straight line
        ([0, 1, 2, 3], [0, 5, 8, 9]),  # bulging upwards: no point below the chord
        ([1, 2, 3], [4, 4, 4]),  # flat
        ([1, 1, 1], [3, 2, 1]),  # no extent along x
    ],
    ids=["falling-line", "rising-line", "concave", "flat", "vertical"],
)
def test_a_curve_without_a_knee_has_none(x, y) -> None:
    assert clustering.knee_index(x, y) is None


# ---------------------------------------------------------------------------- matching


def test_hungarian_matching_recovers_a_permuted_labelling() -> None:
    truth = np.random.default_rng(0).integers(0, 3, size=(4, 8, 8, 1))
    permutation = np.array([2, 0, 1])  # class c became cluster permutation[c]
    clusters = permutation[truth[..., 0]]
    mapping = clustering.match_clusters(clusters, truth)
    assert mapping == {2: 0, 0: 1, 1: 2}
    assert all(type(key) is int and type(value) is int for key, value in mapping.items())


def test_hungarian_matching_is_one_to_one_where_majority_is_not() -> None:
    clusters = np.array([0, 0, 0, 1, 1, 1])
    truth = np.array([0, 0, 0, 0, 0, 1])
    # Contingency: cluster 0 = [3, 0, 0], cluster 1 = [2, 1, 0]. The majority of both is class 0,
    # but one-to-one matching must give cluster 1 another class: class 1 (4 of 6 right, not 3).
    assert clustering.match_clusters(clusters, truth) == {0: 0, 1: 1}


def test_matching_ignores_noise_and_accepts_any_cluster_ids() -> None:
    clusters = np.array([clustering.NOISE, 7, 7, 3, 3, clustering.NOISE])
    truth = np.array([0, 2, 2, 0, 0, 1])
    assert clustering.NOISE == -1
    assert clustering.match_clusters(clusters, truth) == {7: 2, 3: 0}


def test_majority_matching_when_there_are_more_clusters_than_classes() -> None:
    clusters = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    truth = np.array([0, 0, 1, 1, 1, 2, 2, 0, 2, 1])
    # Clusters: 0 -> [2, 1, 0] class 0; 1 -> [0, 2, 0] class 1; 2 -> [1, 0, 2] class 2;
    # 3 -> [0, 1, 1] a tie, which goes to the lower class, 1. Two clusters may share a class.
    assert clustering.match_clusters(clusters, truth) == {0: 0, 1: 1, 2: 2, 3: 1}


# ---------------------------------------------------------------------------- scores


def test_a_perfect_permuted_clustering_scores_one_everywhere() -> None:
    truth = np.random.default_rng(1).integers(0, 3, size=(3, 10, 10))
    clusters = np.array([1, 2, 0])[truth]
    scores = clustering.cluster_scores(clusters, truth)
    assert scores["clusters"] == 3 and scores["matching"] == "hungarian"
    assert scores["matched mean IoU"] == 1.0 and scores["pixel accuracy"] == 1.0
    for key in ("ARI", "NMI", "AMI"):
        assert scores[key] == pytest.approx(1.0), key


def test_an_unrelated_clustering_scores_about_chance() -> None:
    rng = np.random.default_rng(2)
    truth, clusters = rng.integers(0, 3, 3_000), rng.integers(0, 3, 3_000)
    scores = clustering.cluster_scores(clusters, truth)
    assert abs(scores["ARI"]) < 0.02 and abs(scores["AMI"]) < 0.02
    assert scores["pixel accuracy"] < 0.4 and scores["matched mean IoU"] < 0.25


def test_noise_counts_as_wrong() -> None:
    clusters = np.array([clustering.NOISE, 0, 0, 1])
    truth = np.array([0, 0, 0, 1])
    scores = clustering.cluster_scores(clusters, truth)
    assert scores["clusters"] == 2
    assert scores["pixel accuracy"] == pytest.approx(3 / 4)
    # pet: TP 2, and its noise pixel is a false negative: 2 / (3 + 2 - 2) = 2/3; background: 1; border absent.
    assert scores["matched mean IoU"] == pytest.approx((2 / 3 + 1) / 2)


def test_a_class_left_without_a_cluster_scores_zero() -> None:
    clusters = np.array([0, 0, 0, 5, 5])
    truth = np.array([0, 0, 1, 2, 2])
    # Hungarian: cluster 0 -> pet, cluster 5 -> border; no cluster is left for background.
    # IoU pet = 2 / (3 + 2 - 2) = 2/3, background = 0 / 1 = 0, border = 2 / 2 = 1.
    scores = clustering.cluster_scores(clusters, truth)
    assert scores["matched mean IoU"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert scores["pixel accuracy"] == pytest.approx(4 / 5)


def test_majority_scores_by_hand() -> None:
    clusters = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    truth = np.array([0, 0, 1, 1, 1, 2, 2, 0, 2, 1])
    scores = clustering.cluster_scores(clusters, truth)
    assert scores["clusters"] == 4 and scores["matching"] == "majority"
    # Predicted [0 0 0 1 1 2 2 2 1 1]: 7 of 10 right. Confusion rows (truth): [2 0 1], [1 3 0], [0 1 2].
    # IoU: 2 / (3 + 3 - 2) = 0.5, 3 / (4 + 4 - 3) = 0.6, 2 / (3 + 3 - 2) = 0.5.
    assert scores["pixel accuracy"] == pytest.approx(0.7)
    assert scores["matched mean IoU"] == pytest.approx(1.6 / 3)


def test_scores_without_noise_agree_with_the_segmentation_metrics() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 500)
    clusters = np.where(rng.random(500) < 0.8, truth, rng.integers(0, 3, 500))
    clusters = np.array([2, 0, 1])[clusters]  # cluster ids need not be class ids
    mapping = clustering.match_clusters(clusters, truth)
    predicted = np.array([mapping[cluster] for cluster in clusters])
    expected = metrics.segmentation_scores(metrics.confusion_matrix(truth, predicted))
    scores = clustering.cluster_scores(clusters, truth)
    assert scores["matched mean IoU"] == pytest.approx(expected["mean_iou"])
    assert scores["pixel accuracy"] == pytest.approx(expected["pixel_accuracy"])
    assert scores["pixel accuracy"] > 0.8


def test_all_noise_is_scored_as_all_wrong() -> None:
    scores = clustering.cluster_scores(np.full(4, clustering.NOISE), np.array([0, 1, 1, 2]))
    assert scores["clusters"] == 0 and scores["pixel accuracy"] == 0.0
