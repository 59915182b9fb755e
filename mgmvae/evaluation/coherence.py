"""Coherence: cross-modal generation accuracy (Table 1) and joint coherence of prior samples.

Cross-coherence, two readings: ``accuracy``, plain accuracy as the MGMVAE paper reports it (the
fraction of source images whose generated target the target modality's classifier labels as the
source); ``balanced_accuracy``, MultiVae's reading, the mean over classes of the per-class
accuracies (scikit-learn's ``balanced_accuracy_score``; equal to plain accuracy on a class-balanced
test set with class-independent errors).

Joint coherence (MMVAE, iffsid/mmvae src/report/analyse_ms.py ``joint_coherence``): N draws from
the model's prior, every modality decoded, the fraction of draws on which all the modalities'
classifiers predict the same digit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from torch import Tensor, nn
from tqdm.auto import tqdm


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def cross_generation_predictions(
    generate: Callable[[Tensor], Tensor],
    source_images: Tensor,
    classifier: nn.Module,
    batch_size: int = 1024,
    progress: bool = False,
) -> np.ndarray:
    """The classifier's labels of ``generate(x)`` for every source image, in order.

    ``source_images``: uint8 (converted per batch) or float images in [0, 1]; ``generate`` maps a
    float batch of the source modality to target images in [0, 1] (it moves data to its model's
    device itself). The classifier is put in eval mode.
    """
    if len(source_images) == 0:
        raise ValueError("cross-generation needs at least one source image")
    classifier.eval()
    device = _device(classifier)
    preds = []
    for s in tqdm(range(0, len(source_images), batch_size), desc="cross-generation", disable=not progress, leave=False):
        x = source_images[s : s + batch_size]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        preds.append(classifier(generate(x).to(device)).argmax(1).cpu())
    return torch.cat(preds).numpy()


def cross_coherence(
    generate: Callable[[Tensor], Tensor],
    source_images: Tensor,
    source_labels: Tensor,
    classifier: nn.Module,
    batch_size: int = 1024,
    progress: bool = False,
) -> dict[str, float]:
    """``{"accuracy", "balanced_accuracy"}`` of the generated targets against the source labels."""
    if len(source_images) != len(source_labels):
        raise ValueError("source_images and source_labels differ in length")
    pred = cross_generation_predictions(generate, source_images, classifier, batch_size, progress)
    true = source_labels.cpu().numpy()
    return {
        "accuracy": float(accuracy_score(true, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(true, pred)),
    }


def cross_generation_accuracy(
    generate: Callable[[Tensor], Tensor],
    source_images: Tensor,
    source_labels: Tensor,
    classifier: nn.Module,
    batch_size: int = 1024,
    progress: bool = False,
) -> float:
    """Plain accuracy of ``classifier(generate(x))`` against the label of the source image ``x``."""
    return cross_coherence(generate, source_images, source_labels, classifier, batch_size, progress)["accuracy"]


@torch.no_grad()
def joint_coherence(
    sample: Callable[[int], Mapping[str, Tensor]],
    n: int,
    classifiers: Mapping[str, nn.Module],
    batch_size: int = 1024,
    progress: bool = False,
) -> float:
    """Fraction of ``n`` joint samples on which every modality's classifier gives the same label.

    ``sample(k)`` returns ``{modality: k images in [0, 1]}`` drawn from the model's prior; every
    modality it returns needs a classifier.
    """
    if n < 1:
        raise ValueError(f"joint coherence needs at least one prior draw, got n = {n}")
    agree = 0
    for s in tqdm(range(0, n, batch_size), desc="joint coherence", disable=not progress, leave=False):
        images = sample(min(batch_size, n - s))
        missing = sorted(set(images) - set(classifiers))
        if missing:
            raise ValueError(f"joint coherence: no classifier for modalities {missing}")
        preds = []
        for m, x in images.items():
            classifiers[m].eval()
            preds.append(classifiers[m](x.to(_device(classifiers[m]))).argmax(1).cpu())
        stacked = torch.stack(preds)  # [M, k]
        agree += int((stacked == stacked[0]).all(0).sum())
    return agree / n
