"""Evaluation: pure metrics over tensors/callables, and one orchestrator calling the model interface."""

from mgmvae.evaluation.classifiers import (
    load_classifier,
    save_classifier,
    train_classifier,
)
from mgmvae.evaluation.clustering import clustering_scores, hungarian_accuracy, kmeans_assignments
from mgmvae.evaluation.coherence import (
    conditional_coherence,
    joint_coherence,
)
from mgmvae.evaluation.likelihood import estimate_log_likelihood, evaluate_log_likelihood
from mgmvae.evaluation.probe import fit_linear_probe, linear_probe
from mgmvae.evaluation.protocol import resolve_protocol
from mgmvae.evaluation.retrieval import top1_retrieval, topk_indices
from mgmvae.evaluation.run import evaluate_model

__all__ = [
    "clustering_scores",
    "conditional_coherence",
    "estimate_log_likelihood",
    "evaluate_log_likelihood",
    "evaluate_model",
    "fit_linear_probe",
    "hungarian_accuracy",
    "joint_coherence",
    "kmeans_assignments",
    "linear_probe",
    "load_classifier",
    "resolve_protocol",
    "save_classifier",
    "top1_retrieval",
    "topk_indices",
    "train_classifier",
]
