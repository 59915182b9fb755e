"""Generative quality and diversity of generated images on the features of a fixed network:
``fd_classifier``, ``fid_inception``, ``precision``, ``recall`` and ``label_entropy``; docs/evaluation.md
("Generative quality and diversity") gives each one's definition, reference and reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import entropy
from torch import Tensor, nn

from mgmvae.compat import import_torchvision

INCEPTION_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
Features = dict[str, Tensor]  # "classifier" [n, D], "logits" [n, classes], "inception" [n, 2048] with a net


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """‖μa − μb‖² + Tr Σa + Tr Σb − 2 Tr (Σa Σb)^½ of the rows of two feature sets, in float64.
    Tr (Σa Σb)^½ is Σ √λ over the eigenvalues of the symmetric Σa^½ Σb Σa^½, which share them."""
    if min(len(a), len(b)) < 2:
        raise ValueError(f"a Fréchet distance needs at least 2 points per set, got {len(a)} and {len(b)}")
    x, y = (t.detach().double().cpu().numpy() for t in (a, b))
    ca, cb = (np.atleast_2d(np.cov(v, rowvar=False)) for v in (x, y))
    w, v = np.linalg.eigh(ca)
    root = (v * np.sqrt(w.clip(0))) @ v.T
    inner = root @ cb @ root
    cross = np.sqrt(np.linalg.eigvalsh((inner + inner.T) / 2).clip(0)).sum()
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + np.trace(ca) + np.trace(cb) - 2 * cross)


def _distances(a: Tensor, b: Tensor) -> Tensor:
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")  # exact: a point is at 0 from itself


def _radii(x: Tensor, k: int, chunk: int) -> Tensor:
    """Each point's distance to its k-th nearest other point (itself, at 0, is the first)."""
    if len(x) <= k:
        raise ValueError(f"k-NN manifolds with k = {k} need more than {k} points, got {len(x)}")
    return torch.cat([_distances(part, x).kthvalue(k + 1, dim=1).values for part in x.split(chunk)])


def _covered(points: Tensor, centres: Tensor, radii: Tensor, chunk: int) -> float:
    """Share of ``points`` within the radius of at least one centre."""
    inside = [(_distances(part, centres) <= radii).any(1) for part in points.split(chunk)]
    return torch.cat(inside).float().mean().item()


def precision_recall(real: Tensor, fake: Tensor, k: int, chunk: int) -> dict[str, float]:
    """Improved precision and recall of ``fake`` against ``real`` (rows: features), ``chunk`` rows at a time."""
    real, fake = real.float(), fake.float().to(real.device)
    return {
        "precision": _covered(fake, real, _radii(real, k, chunk), chunk),
        "recall": _covered(real, fake, _radii(fake, k, chunk), chunk),
    }


def label_entropy(logits: Tensor) -> float:
    """Entropy of the argmax labels over the classes of ``logits`` [n, classes], in [0, 1]."""
    counts = torch.bincount(logits.argmax(1), minlength=logits.shape[1]).cpu().numpy()
    return float(entropy(counts, base=logits.shape[1]))


@torch.no_grad()
def gather_features(
    batches: Iterable[Mapping[str, Tensor]], classifiers: Mapping[str, nn.Module], inception: nn.Module | None
) -> dict[str, Features]:
    """Per modality, the features of every image of ``batches`` ({modality: images in [0, 1]}),
    computed batch by batch on each network's device and concatenated there."""
    parts: dict[str, dict[str, list[Tensor]]] = {}
    for batch in batches:
        for m, x in batch.items():
            clf: Any = classifiers[m].eval()  # a digit classifier: features and head (mgmvae.nets)
            h = clf.features(x.to(next(clf.parameters()).device))
            got = {"classifier": h, "logits": clf.head(h)}
            if inception is not None:
                got["inception"] = inception(x.to(next(inception.parameters()).device))
            for key, value in got.items():
                parts.setdefault(m, {}).setdefault(key, []).append(value)
    return {m: {key: torch.cat(values) for key, values in got.items()} for m, got in parts.items()}


def image_quality(real: Features, fake: Features, k: int, chunk: int) -> dict[str, float]:
    """The scores of generated images ``fake`` against real ones: classifier FD, precision, recall
    and, with Inception features, Inception FID."""
    out = {"fd_classifier": frechet_distance(real["classifier"], fake["classifier"])}
    out |= precision_recall(real["classifier"], fake["classifier"], k, chunk)
    if "inception" in fake:
        out["fid_inception"] = frechet_distance(real["inception"], fake["inception"])
    return out


class InceptionFeatures(nn.Module):
    """``net``'s output on images in [0, 1] made Inception's input: grey repeated to three channels,
    bilinear resize to 299×299, scaled to [−1, 1] (what torchvision's ``transform_input`` makes of
    ImageNet-normalised input). ``net``: Inception-v3 up to pool3, or any stand-in (the tests')."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return self.net(2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1)


def load_inception(path: str | Path, device: torch.device | str) -> InceptionFeatures:
    """torchvision's Inception-v3 with the ImageNet weights at ``path``, its classifier removed
    (pool3 features), in eval mode on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"config key 'evaluation.inception_weights': {path} does not exist. Put torchvision's Inception-v3 "
            f"ImageNet weights there ({INCEPTION_URL}), or set the key to null: Inception FID is then not computed"
        )
    net = import_torchvision().models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    net.fc = nn.Identity()
    return InceptionFeatures(net).to(device).eval()
