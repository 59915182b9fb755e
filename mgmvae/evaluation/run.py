"""The one place that calls the model interface; every metric below it works on tensors.

Model interface (implemented by each model):
  ``embed(batch, modalities) -> [B, D]``   shared posterior mean from a subset of modalities
  ``generate(batch, source, target)``      decoder mean of ``target`` from ``source`` alone
  ``cluster(batch, modalities)``           own cluster assignment, or None (then k-means)
  ``encode``/``joint_posterior``/``decode``/``log_prior``   densities for the test log-likelihood
All test metrics read the test split only; the probe is fitted on training pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from mgmvae.data.paired import PairedData
from mgmvae.evaluation.clustering import clustering_scores, kmeans_assignments
from mgmvae.evaluation.coherence import cross_generation_accuracy
from mgmvae.evaluation.likelihood import evaluate_log_likelihood
from mgmvae.evaluation.probe import linear_probe
from mgmvae.evaluation.retrieval import top1_retrieval

DEFAULT_SETTINGS = {
    "batch_size": 1024,
    "probe_max_train": 50_000,
    "max_cluster": 10_000,
    "n_clusters": 10,
    "retrieval_chunk": 4096,
    "likelihood_samples": 0,  # K importance draws per pair; 0 skips the metric (config.yaml: 1,000, MMVAE's)
    "likelihood_pairs": 1000,  # seeded subsample of test pairs
    "likelihood_chunk": 8192,  # latent draws × pairs decoded at once (bounds memory)
    "likelihood_weighted": False,  # true: the joint estimate with the model's likelihood weights, as MMVAE's
    "progress": True,
}

Batch = dict[str, Tensor]


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model with neither)."""
    if isinstance(model, nn.Module):
        for t in list(model.parameters()) + list(model.buffers()):
            return t.device
    return torch.device(getattr(model, "device", "cpu"))


def _to_float(x: Tensor, device: torch.device) -> Tensor:
    # move as uint8 (4x less traffic), convert on the device
    return x.to(device, non_blocking=True).float().div_(255.0)


def _batched(fn: Callable[[Tensor], Tensor | None], n: int, batch_size: int, desc: str, progress: bool):
    """Concatenate fn(index slice) over [0, n); stops and returns None if fn returns None."""
    out = []
    for s in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
        y = fn(torch.arange(s, min(s + batch_size, n)))
        if y is None:
            return None
        out.append(y)
    return torch.cat(out)


def _pair_batch(data: PairedData, split: str, idx: Tensor, device: torch.device) -> Batch:
    rows = data.pairs[split][idx.to(data.device)]
    return {m: _to_float(data.images[m][split][rows[:, j]], device) for j, m in enumerate(data.modalities)}


def embed_pairs(model, data: PairedData, split: str, pair_index: Tensor, batch_size: int, progress: bool) -> Tensor:
    """Joint embedding (all modalities) of the given pairs."""
    device = model_device(model)
    fn = lambda i: model.embed(_pair_batch(data, split, pair_index[i], device), data.modalities)  # noqa: E731
    return _batched(fn, len(pair_index), batch_size, f"embed {split} pairs", progress)


def embed_unimodal(model, data: PairedData, modality: str, split: str, batch_size: int, progress: bool) -> Tensor:
    """Embedding of every image of one modality, that modality alone."""
    device = model_device(model)
    images = data.images[modality][split]
    fn = lambda i: model.embed({modality: _to_float(images[i.to(images.device)], device)}, [modality])  # noqa: E731
    return _batched(fn, len(images), batch_size, f"embed {split} {modality}", progress)


def _subsample(n: int, cap: int | None, seed: int) -> Tensor:
    """Sorted seeded subsample of range(n) of size cap (all of it if n <= cap)."""
    if cap is None or n <= cap:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:cap].sort().values


def evaluate_model(
    model: nn.Module, data: PairedData, classifiers: dict[str, nn.Module], settings: dict | None, seed: int
) -> dict:
    """Tables 1-3 metrics plus clustering for one trained model; a JSON-able dict of fractions."""
    cfg = {**DEFAULT_SETTINGS, **(settings or {})}
    bs, progress = int(cfg["batch_size"]), bool(cfg["progress"])
    m0, m1 = data.modalities
    directions = [(m0, m1), (m1, m0)]
    device = model_device(model)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with torch.no_grad():
            # Table 1: generate target from each unique test image of the source modality.
            cross = {}
            for src, tgt in directions:
                generate = lambda x, s=src, t=tgt: model.generate({s: x.to(device)}, s, t)  # noqa: E731
                cross[f"{src}->{tgt}"] = cross_generation_accuracy(
                    generate, data.images[src]["test"], data.labels[src]["test"], classifiers[tgt], bs, progress
                )

            # Unimodal test embeddings serve both the probe (Table 2) and retrieval (Table 3).
            uni = {m: embed_unimodal(model, data, m, "test", bs, progress) for m in data.modalities}
            uni_y = {m: data.labels[m]["test"] for m in data.modalities}
            test_pairs = torch.arange(data.num_pairs("test"))
            joint_test = embed_pairs(model, data, "test", test_pairs, bs, progress)
            joint_test_y = data.pair_labels("test")

            # Table 2: subsample train pairs before embedding them (1M pairs would be wasted work).
            train_idx = _subsample(data.num_pairs("train"), cfg["probe_max_train"], seed)
            train_z = embed_pairs(model, data, "train", train_idx, bs, progress)
            train_y = data.pair_labels("train", train_idx.to(data.device))
            tests = {m: (uni[m], uni_y[m]) for m in data.modalities} | {"joint": (joint_test, joint_test_y)}
            probe = linear_probe(train_z, train_y, tests, seed=seed, max_train=None)

            # Table 3: every test image of the source queries every test image of the target.
            retrieval = {
                f"{s}->{t}": top1_retrieval(uni[s], uni_y[s], uni[t], uni_y[t], chunk=int(cfg["retrieval_chunk"]))
                for s, t in directions
            }

            clustering = _clustering(model, data, joint_test, joint_test_y, cfg, seed, progress)
            likelihood = _log_likelihood(model, data, cfg, seed, progress)
    finally:
        model.train(was_training)
    metrics = {"cross_generation": cross, "probe": probe, "retrieval_top1": retrieval, "clustering": clustering}
    return metrics | ({"log_likelihood": likelihood} if likelihood else {})


def _log_likelihood(model, data: PairedData, cfg: dict, seed: int, progress: bool) -> dict | None:
    """Importance-sampled test log-likelihoods on a seeded subsample of test pairs (None: skipped)."""
    samples = int(cfg["likelihood_samples"])
    if samples == 0:
        return None
    idx = _subsample(data.num_pairs("test"), cfg["likelihood_pairs"], seed + 2)
    device = model_device(model)
    return evaluate_log_likelihood(
        model,
        lambda i: _pair_batch(data, "test", idx[i], device),
        len(idx),
        samples,
        int(cfg["likelihood_chunk"]),
        seed=seed + 3,
        weighted=bool(cfg["likelihood_weighted"]),
        progress=progress,
    )


def _clustering(
    model, data: PairedData, joint_z: Tensor, joint_y: Tensor, cfg: dict, seed: int, progress: bool
) -> dict:
    """Model's own clusters on a seeded subsample of test pairs, else k-means on their joint embedding."""
    idx = _subsample(len(joint_z), cfg["max_cluster"], seed + 1)
    device, k = model_device(model), int(cfg["n_clusters"])
    fn = lambda i: model.cluster(_pair_batch(data, "test", idx[i], device), data.modalities)  # noqa: E731
    assignments = _batched(fn, len(idx), int(cfg["batch_size"]), "cluster", progress)
    method = "mixture"
    if assignments is None:
        method = "kmeans"
        assignments = kmeans_assignments(joint_z[idx.to(joint_z.device)], k, seed)
    scores = clustering_scores(joint_y[idx.to(joint_y.device)], assignments)
    return {**scores, "method": method, "k": k}
