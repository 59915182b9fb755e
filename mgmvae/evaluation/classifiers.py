"""Training, saving and loading the digit classifiers that score coherence (``mgmvae.nets.CLASSIFIERS``),
or loading released weights instead: one state dict per modality, ``pretrained_img_to_digit_clf_<modality>``,
as MoPoE, MMVAE+ and MultiVae load ``ClfImg``'s (docs/datasets.md), here strictly and after an MD5 check.
Classifiers take float images in [0, 1] (MoPoE's and MMVAE+'s ``ToTensor``; MultiVae's tensors)."""

from __future__ import annotations

import hashlib
import math
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from mgmvae.data.paired import DataError
from mgmvae.io import load_torch, save_torch
from mgmvae.nets import Classifier, digit_classifier
from mgmvae.seeding import seed_everything

RELEASED_FILE = "pretrained_img_to_digit_clf_{modality}"  # as the references name them


def _as_float(x: Tensor) -> Tensor:
    """uint8 images -> float in [0, 1]; float images pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def predict(net: nn.Module, images: Tensor, batch_size: int) -> Tensor:
    """Predicted class per image (uint8 or float [0,1] images), computed in batches on net's device."""
    net.eval()
    device = next(net.parameters()).device
    out = [net(_as_float(images[s : s + batch_size].to(device))).argmax(1) for s in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=device)


def accuracy(net: nn.Module, images: Tensor, labels: Tensor, batch_size: int) -> float:
    pred = predict(net, images, batch_size)
    return (pred == labels.to(pred.device)).float().mean().item()


def train_classifier(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    network: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    eval_batch_size: int,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> tuple[Classifier, dict]:
    """Train the digit classifier ``network`` with Adam (MMVAE: 30 epochs, lr 1e-3, batch 256); its
    accuracy is predicted ``eval_batch_size`` images at a time (``evaluation.batch_size``).

    Images stay uint8 on the device and each batch is gathered and converted there, so an epoch
    has no per-sample Python. Seeded as a training run (``seed_everything``: deterministic kernels
    on a GPU too) for the initialisation and dropout, a separate ``torch.Generator`` the shuffling order.
    """
    if train_x.dtype != torch.uint8 or test_x.dtype != torch.uint8:
        raise TypeError("train_classifier expects uint8 images [N, C, H, W]")
    device = torch.device(device)
    seed_everything(seed)
    net = digit_classifier(train_x.shape[1:], network).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    shuffle = torch.Generator().manual_seed(seed)
    train_x, test_x = train_x.to(device), test_x.to(device)
    train_y, test_y = train_y.to(device).long(), test_y.to(device).long()

    n = len(train_x)
    test_accuracy = lambda: accuracy(net, test_x, test_y, eval_batch_size)  # noqa: E731
    per_epoch: list[dict] = []
    bar = tqdm(total=epochs * math.ceil(n / batch_size), desc="digit classifier", disable=not progress)
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.randperm(n, generator=shuffle).to(device)
        loss_sum = torch.zeros((), device=device)  # summed on device: no sync per step
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            loss = F.cross_entropy(net(train_x[idx].float().div_(255.0)), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(idx)
            bar.update()
        record = {"epoch": epoch, "loss": loss_sum.item() / n, "test_accuracy": test_accuracy()}
        per_epoch.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}", test_acc=f"{record['test_accuracy']:.4f}")
        if on_epoch is not None:
            on_epoch(epoch, record)
    bar.close()

    metrics = {
        "test_accuracy": per_epoch[-1]["test_accuracy"] if per_epoch else test_accuracy(),
        "train_accuracy": accuracy(net, train_x, train_y, eval_batch_size),
        "epochs": epochs,
        "per_epoch": per_epoch,
        "seed": seed,
        "n_train": n,
        "n_test": len(test_x),
    }
    net.eval()
    return net, metrics


def load_released(
    folder: Path, modality: str, md5: str | None, network: str, shape: Sequence[int], key: str
) -> Classifier:
    """The released state dict of ``modality`` in ``folder`` as ``network``, in eval mode; DataError naming
    the file and the fix (``key``: the config key of ``released``) if it is missing, unverified or another's."""
    path, off = folder / RELEASED_FILE.format(modality=modality), f"or set {key}: null to train the classifier here"
    if not path.is_file():
        raise DataError(f"released classifier weights {path} are missing: copy the file there, {off}")
    found, md5_key = hashlib.md5(path.read_bytes()).hexdigest(), f"{key}.md5.{modality}"
    if found != md5:  # no checksum is published: with md5 null, the user vouches for the file
        why = "cannot be verified" if md5 is None else f"fails its MD5 check ({md5_key} = {md5})"
        raise DataError(f"{path} {why}: its MD5 is {found}; set {md5_key}: {found} once you trust the file, {off}")
    net = digit_classifier(shape, network)
    try:
        net.load_state_dict(load_torch(path))
    except (RuntimeError, EOFError, pickle.UnpicklingError, AttributeError, TypeError) as error:
        raise DataError(f"{path} is not a state dict of {network} ({', '.join(net.state_dict())}): {error}") from None
    return net.eval()


def save_classifier(net: Classifier, metrics: dict, path: str | Path) -> None:
    """Store state_dict + network + input shape + metrics (plain types only, so loadable with weights_only)."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    save_torch({"state_dict": state, "network": net.network, "shape": list(net.shape), "metrics": metrics}, path)


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """Rebuild a saved classifier in eval mode on ``device``; its metrics are at ``net.metrics``."""
    raw = load_torch(path)
    net = digit_classifier(raw["shape"], raw["network"])
    net.load_state_dict(raw["state_dict"])
    net.metrics = raw.get("metrics", {})
    return net.to(device).eval()
