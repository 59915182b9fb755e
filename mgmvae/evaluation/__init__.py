"""Evaluation: pure metrics over tensors/callables, and one orchestrator calling the model interface."""

from mgmvae.evaluation.clustering import clustering_scores, kmeans_assignments
from mgmvae.evaluation.coherence import conditional_coherence
from mgmvae.evaluation.probe import linear_probe
from mgmvae.evaluation.retrieval import top1_retrieval, topk_indices
from mgmvae.evaluation.run import evaluate_model

__all__ = [
    "clustering_scores",
    "conditional_coherence",
    "evaluate_model",
    "kmeans_assignments",
    "linear_probe",
    "top1_retrieval",
    "topk_indices",
]
