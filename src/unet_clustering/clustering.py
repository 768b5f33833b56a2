"""Choosing k, and scoring clusters against a ground truth.

Taught in ``05_clustering``, where the code below the marker is written and explained, beside the
scikit-learn calls (``KMeans``, ``silhouette_score``, ``DBSCAN``, ``HDBSCAN``) that it works with.
Only ``numpy``, ``scipy`` and ``scikit-learn`` are used.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score, normalized_mutual_info_score

from unet_clustering import config
from unet_clustering.metrics import confusion_matrix, ratio


# ---- Exported from notebooks/05_clustering.ipynb: edit the notebook, then run `make export`. ----
def knee_index(x, y):
    """The index of the point farthest below the line from a curve's first point to its last (axes scaled to [0, 1]).

    On a falling inertia curve that is the elbow; on a rising k-distance curve, the knee. A curve with no point below
    its line (straight, or bulging upwards) has no knee: the result is then None.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x[-1] == x[0] or y.max() == y.min():
        return None
    x_scaled = (x - x[0]) / (x[-1] - x[0])
    y_scaled = (y - y.min()) / (y.max() - y.min())
    below = y_scaled[0] + (y_scaled[-1] - y_scaled[0]) * x_scaled - y_scaled
    best = int(np.argmax(below))
    return best if below[best] > 1e-12 else None


NOISE = -1


def match_clusters(cluster_labels, true_labels, num_classes=None):
    """{cluster: class}: Hungarian matching when there are at most as many clusters as classes, else majority.

    `num_classes` defaults to the number of classes of the data that `01_data` chose.
    """
    num_classes = num_classes or config.dataset_classes().num_classes
    clusters, truth = np.ravel(cluster_labels), np.ravel(true_labels)
    ids = np.unique(clusters[clusters != NOISE])
    if not len(ids):  # every point is noise
        return {}
    table = np.array([np.bincount(truth[clusters == cluster], minlength=num_classes) for cluster in ids])
    if len(ids) <= num_classes:
        rows, matched = linear_sum_assignment(table, maximize=True)
    else:
        rows, matched = np.arange(len(ids)), table.argmax(axis=1)
    return {int(ids[row]): int(label) for row, label in zip(rows, matched, strict=True)}


def cluster_scores(cluster_labels, true_labels, num_classes=None):
    """Matched mean IoU and pixel accuracy of clusters (noise counts as wrong), and their ARI, NMI and AMI."""
    num_classes = num_classes or config.dataset_classes().num_classes
    clusters, truth = np.ravel(cluster_labels), np.ravel(true_labels)
    mapping = match_clusters(clusters, truth, num_classes)
    # Noise and unmatched clusters go to an extra column, "unassigned": never right, never a true class.
    lookup = np.vectorize(lambda cluster: mapping.get(int(cluster), num_classes), otypes=[np.int64])
    cm = confusion_matrix(truth, lookup(clusters), num_classes + 1)[:num_classes]
    true_positive = np.diag(cm[:, :num_classes])
    iou = ratio(true_positive, cm.sum(axis=1) + cm[:, :num_classes].sum(axis=0) - true_positive)
    num_clusters = len(np.unique(clusters[clusters != NOISE]))
    return {
        "clusters": num_clusters,
        "matching": "hungarian" if num_clusters <= num_classes else "majority",
        "matched mean IoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
        "pixel accuracy": float(true_positive.sum() / cm.sum()),
        "ARI": float(adjusted_rand_score(truth, clusters)),
        "NMI": float(normalized_mutual_info_score(truth, clusters)),
        "AMI": float(adjusted_mutual_info_score(truth, clusters)),
    }


# ---- End of the code exported from notebooks/05_clustering.ipynb. ----
