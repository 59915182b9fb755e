"""The one place that calls the model interface; every metric below it works on tensors.

Model interface (implemented by each model; ``protocol`` is ``mean`` or ``sample``, mgmvae/base.py):
  ``embed(batch, modalities, protocol) -> [B, D]``  shared representation from a subset of modalities
  ``generate(batch, source, target, protocol)``     decoder mean of ``target`` from ``source`` alone
  ``sample(n)``                                     joint generation from the prior (joint coherence)
  ``cluster(batch, modalities)``                    own cluster assignment, or None (then k-means)
  ``encode``/``joint_posterior``/``decode``/``log_prior``   densities for the test log-likelihood
All test metrics read the test split only; the probe is fitted (and its C cross-validated) on
training pairs only. Every random draw is seeded from the run's seed, one seed per metric
(``protocol.seeded``), so the same seed gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from mgmvae.data.paired import PairedData
from mgmvae.evaluation.clustering import clustering_scores, kmeans_assignments
from mgmvae.evaluation.coherence import cross_coherence, joint_coherence
from mgmvae.evaluation.likelihood import evaluate_log_likelihood
from mgmvae.evaluation.probe import fit_linear_probe, probe_accuracy
from mgmvae.evaluation.retrieval import top1_retrieval
from mgmvae.seeding import seeded

if TYPE_CHECKING:
    from mgmvae.base import MultimodalVAE

# Offsets of each metric's seed from the run's seed: every metric draws from its own stream.
SEED_OFFSET = {"cross": 0, "embed": 1000, "joint": 2000, "probe_train": 3000}

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


def embed_pairs(
    model, data: PairedData, split: str, pair_index: Tensor, batch_size: int, progress: bool, protocol: str = "mean"
) -> Tensor:
    """Joint embedding (all modalities) of the given pairs."""
    device = model_device(model)
    fn = lambda i: model.embed(_pair_batch(data, split, pair_index[i], device), data.modalities, protocol)  # noqa: E731
    return _batched(fn, len(pair_index), batch_size, f"embed {split} pairs", progress)


def embed_unimodal(
    model, data: PairedData, modality: str, split: str, batch_size: int, progress: bool, protocol: str = "mean"
) -> Tensor:
    """Embedding of every image of one modality, that modality alone."""
    device = model_device(model)
    images = data.images[modality][split]
    fn = lambda i: model.embed({modality: _to_float(images[i.to(images.device)], device)}, [modality], protocol)  # noqa: E731
    return _batched(fn, len(images), batch_size, f"embed {split} {modality}", progress)


def _subsample(n: int, cap: int | None, seed: int) -> Tensor:
    """Sorted seeded subsample of range(n) of size cap (all of it if n <= cap)."""
    if cap is None or n <= cap:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:cap].sort().values


def evaluate_model(
    model: MultimodalVAE,
    data: PairedData,
    classifiers: Mapping[str, nn.Module],
    settings: Mapping[str, Any],
    seed: int,
    *,
    protocol: str,
    progress: bool = False,
) -> dict:
    """Tables 1-3 metrics, joint coherence and clustering for one trained model; a JSON-able dict
    of dicts of numbers (fractions), keyed as ``METRIC_KEYS`` describes. ``settings`` is the config's
    ``evaluation`` section; ``protocol`` the resolved one (``mean`` or ``sample``)."""
    bs = int(settings["batch_size"])
    m0, m1 = data.modalities
    directions = [(m0, m1), (m1, m0)]
    device = model_device(model)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with torch.no_grad():
            # Table 1: generate target from each unique test image of the source modality.
            cross = {}
            with seeded(seed + SEED_OFFSET["cross"], device):
                for src, tgt in directions:
                    generate = lambda x, s=src, t=tgt: model.generate({s: x.to(device)}, s, t, protocol)  # noqa: E731
                    cross[f"{src}->{tgt}"] = cross_coherence(
                        generate, data.images[src]["test"], data.labels[src]["test"], classifiers[tgt], bs, progress
                    )
            n_joint = int(settings["joint_coherence_samples"])
            with seeded(seed + SEED_OFFSET["joint"], device):
                joint = joint_coherence(model.sample, n_joint, classifiers, bs, progress)

            # Unimodal test embeddings serve both the probe (Table 2) and retrieval (Table 3).
            with seeded(seed + SEED_OFFSET["embed"], device):
                uni = {m: embed_unimodal(model, data, m, "test", bs, progress, protocol) for m in data.modalities}
                test_pairs = torch.arange(data.num_pairs("test"))
                joint_test = embed_pairs(model, data, "test", test_pairs, bs, progress, protocol)
            uni_y = {m: data.labels[m]["test"] for m in data.modalities}
            joint_test_y = data.pair_labels("test")

            # Table 2: subsample train pairs before embedding them (1M pairs would be wasted work).
            train_idx = _subsample(data.num_pairs("train"), settings["probe_max_train"], seed)
            with seeded(seed + SEED_OFFSET["probe_train"], device):
                train_z = embed_pairs(model, data, "train", train_idx, bs, progress, protocol)
            train_y = data.pair_labels("train", train_idx.to(data.device))
            probe = fit_linear_probe(train_z, train_y, seed, settings)
            tests = {m: (uni[m], uni_y[m]) for m in data.modalities} | {"joint": (joint_test, joint_test_y)}

            # Table 3: every test image of the source queries every test image of the target.
            retrieval = {
                f"{s}->{t}": top1_retrieval(uni[s], uni_y[s], uni[t], uni_y[t], chunk=int(settings["retrieval_chunk"]))
                for s, t in directions
            }

            clustering = _clustering(model, data, joint_test, joint_test_y, settings, seed, progress)
            likelihood = _log_likelihood(model, data, settings, seed, progress)
    finally:
        model.train(was_training)
    return {
        "cross_generation": {d: v["accuracy"] for d, v in cross.items()},
        "cross_generation_balanced": {d: v["balanced_accuracy"] for d, v in cross.items()},
        "joint_coherence": {"joint": joint, "samples": n_joint},
        "probe": probe_accuracy(probe, tests),
        "probe_selection": probe.selection,
        "retrieval_top1": retrieval,
        "clustering": clustering,
    } | ({"log_likelihood": likelihood} if likelihood else {})


METRIC_KEYS = {
    "cross_generation": "Table 1, plain accuracy per direction 'src->tgt' (the paper's reading)",
    "cross_generation_balanced": "Table 1, mean of per-class accuracies per direction (MultiVae's reading)",
    "joint_coherence": "'joint': fraction of prior draws whose modalities' classifiers agree; 'samples': N",
    "probe": "Table 2, probe accuracy per test set: each modality alone and 'joint'",
    "probe_selection": "the probe: 'method', and 'C', 'cv_accuracy', 'folds' (logistic_cv) or its training settings",
    "retrieval_top1": "Table 3, top-1 retrieval per direction",
    "clustering": "clustering of the joint latent: accuracy, nmi, ari, 'method', 'k'",
    "log_likelihood": "test log-likelihood (nats per pair): 'joint', each modality alone, and the 'estimator' settings",
}


def _log_likelihood(model, data: PairedData, settings: Mapping[str, Any], seed: int, progress: bool) -> dict | None:
    """Importance-sampled test log-likelihoods and their quality on a seeded subsample of test
    pairs (None: skipped). Independent of the protocol: the estimator draws from the posterior."""
    samples = int(settings["likelihood_samples"])
    if samples == 0:
        return None
    idx = _subsample(data.num_pairs("test"), settings["likelihood_pairs"], seed + 2)
    device = model_device(model)
    return evaluate_log_likelihood(
        model,
        lambda i: _pair_batch(data, "test", idx[i], device),
        len(idx),
        samples,
        int(settings["likelihood_chunk"]),
        seed=seed + 3,
        ess_floor=float(settings["likelihood_ess_floor"]),
        weighted=bool(settings["likelihood_weighted"]),
        proposal_scale=float(settings["likelihood_proposal_scale"]),
        progress=progress,
    )


def _clustering(
    model, data: PairedData, joint_z: Tensor, joint_y: Tensor, settings: Mapping[str, Any], seed: int, progress: bool
) -> dict:
    """Model's own clusters on a seeded subsample of test pairs, else k-means on their joint embedding."""
    idx = _subsample(len(joint_z), settings["max_cluster"], seed + 1)
    device, k = model_device(model), int(settings["n_clusters"])
    fn = lambda i: model.cluster(_pair_batch(data, "test", idx[i], device), data.modalities)  # noqa: E731
    assignments = _batched(fn, len(idx), int(settings["batch_size"]), "cluster", progress)
    method = "mixture"
    if assignments is None:
        method = "kmeans"
        assignments = kmeans_assignments(joint_z[idx.to(joint_z.device)], k, seed)
    scores = clustering_scores(joint_y[idx.to(joint_y.device)], assignments)
    return {**scores, "method": method, "k": k}
