"""Clustering quality of the shared latent: Hungarian-matched accuracy, NMI, ARI."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from torch import Tensor


def _labels(x) -> np.ndarray:
    return (x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)).ravel()


def hungarian_accuracy(y_true, assignments) -> float:
    """Accuracy under the best one-to-one map of clusters to classes (unmatched clusters count wrong)."""
    _, t = np.unique(_labels(y_true), return_inverse=True)
    _, a = np.unique(_labels(assignments), return_inverse=True)
    size = max(t.max(), a.max()) + 1
    counts = np.zeros((size, size), dtype=np.int64)
    np.add.at(counts, (a, t), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(t))


def clustering_scores(y_true, assignments) -> dict[str, float]:
    """{"accuracy": Hungarian-matched accuracy, "nmi": ..., "ari": ...} of a cluster assignment."""
    t, a = _labels(y_true), _labels(assignments)
    if len(t) != len(a) or len(t) == 0:
        raise ValueError("y_true and assignments must be non-empty and of equal length")
    return {
        "accuracy": hungarian_accuracy(t, a),
        "nmi": float(normalized_mutual_info_score(t, a)),
        "ari": float(adjusted_rand_score(t, a)),
    }


def kmeans_assignments(z: Tensor, k: int, seed: int) -> Tensor:
    """k-means (k-means++, 10 restarts, seeded) cluster index per row of ``z``, as a LongTensor."""
    km = KMeans(n_clusters=k, n_init=10, random_state=seed)
    return torch.from_numpy(km.fit_predict(z.detach().cpu().double().numpy()).astype(np.int64))
