"""Cross-modal generation accuracy ("coherence", Table 1 of the paper).

Plain accuracy, as the paper reports it (MultiVae's coherence is class-balanced instead; see
REFERENCES §4): the fraction of source images whose generated target is classified as the
source's label by the target modality's pretrained classifier.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm


@torch.no_grad()
def cross_generation_accuracy(
    generate: Callable[[Tensor], Tensor],
    source_images: Tensor,
    source_labels: Tensor,
    classifier: nn.Module,
    batch_size: int = 1024,
    progress: bool = False,
) -> float:
    """Accuracy of ``classifier(generate(x))`` against the label of the source image ``x``.

    ``source_images``: uint8 (converted per batch) or float images in [0, 1]; ``generate`` maps a
    float batch of the source modality to target images in [0, 1] (it moves data to its model's
    device itself). The classifier is put in eval mode.
    """
    if len(source_images) != len(source_labels):
        raise ValueError("source_images and source_labels differ in length")
    if len(source_images) == 0:
        raise ValueError("cross_generation_accuracy needs at least one source image")
    classifier.eval()
    device = next(classifier.parameters()).device
    labels = source_labels.to(device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for s in tqdm(range(0, len(source_images), batch_size), desc="cross-generation", disable=not progress, leave=False):
        x = source_images[s : s + batch_size]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        pred = classifier(generate(x).to(device)).argmax(1)
        correct += (pred == labels[s : s + batch_size]).sum()
    return correct.item() / len(source_images)
