"""Coherence: conditional generation accuracy (Table 1 and the M-modality reading) and joint
coherence of prior samples.

Conditional coherence (MoPoE, thomassutter/MoPoE, eval_metrics/coherence.py ``test_generation``;
MultiVae, multivae/metrics/coherences/coherences.py ``CoherenceEvaluator.coherence_from_subset``):
the target's classifier labels its generation from a subset S of each test item's modalities; it
counts if the label is the item's. ``accuracy`` as the paper and both references report it;
``balanced_accuracy``, scikit-learn's mean of per-class accuracies (MultiVae's). From one source it is
Table 1's (MMVAE, iffsid/mmvae src/report/analyse_ms.py ``cross_coherence``; MMVAE+, epalu/mmvaeplus
src/main_polymnist.py ``cross_coherence``).

Joint coherence (MMVAE, iffsid/mmvae src/report/analyse_ms.py ``joint_coherence``; MoPoE,
eval_metrics/coherence.py ``calculate_coherence``): the fraction of N prior draws, every modality
decoded, on which all the modalities' classifiers predict the same digit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from torch import Tensor, nn
from tqdm.auto import tqdm


@torch.no_grad()
def generated_labels(
    generate: Callable[[Tensor], Tensor],
    n: int,
    classifier: nn.Module,
    batch_size: int,
    progress: bool = False,
) -> np.ndarray:
    """The classifier's labels (in eval mode) of ``generate(index)`` for the items 0..n-1, in order;
    ``generate`` maps consecutive item indices (on the CPU) to generated images in [0, 1] on its device."""
    if n == 0:
        raise ValueError("coherence needs at least one test item to generate from")
    classifier.eval()
    device = next(classifier.parameters()).device
    preds = []
    for s in tqdm(range(0, n, batch_size), desc="conditional generation", disable=not progress, leave=False):
        images = generate(torch.arange(s, min(s + batch_size, n)))
        preds.append(classifier(images.to(device)).argmax(1).cpu())
    return torch.cat(preds).numpy()


def conditional_coherence(
    generate: Callable[[Tensor], Tensor],
    labels: Tensor,
    classifier: nn.Module,
    batch_size: int,
    progress: bool = False,
) -> dict[str, float]:
    """``{"accuracy", "balanced_accuracy"}`` of the generations of the items 0..len(labels)-1
    (``generate(index)``, as ``generated_labels``) against the items' ``labels``."""
    pred = generated_labels(generate, len(labels), classifier, batch_size, progress)
    true = labels.cpu().numpy()
    return {
        "accuracy": float(accuracy_score(true, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(true, pred)),
    }


@torch.no_grad()
def joint_coherence(
    sample: Callable[[int], Mapping[str, Tensor]],
    n: int,
    classifiers: Mapping[str, nn.Module],
    batch_size: int,
    progress: bool = False,
) -> float:
    """Fraction of ``n`` joint samples on which every modality's classifier gives the same label;
    ``sample(k)`` returns ``{modality: k images in [0, 1]}`` drawn from the model's prior."""
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
            preds.append(classifiers[m](x.to(next(classifiers[m].parameters()).device)).argmax(1).cpu())
        stacked = torch.stack(preds)  # [M, k]
        agree += int((stacked == stacked[0]).all(0).sum())
    return agree / n
