"""One run's metrics: the one place that calls the model interface (``embed``, ``generate``, ``sample``,
``cluster``, and the densities of the test log-likelihood; mgmvae/base.py); every metric below it works
on tensors. Test metrics read the test split only; the probes are fitted (their C cross-validated) on
training pairs only. Every draw is seeded from the run's seed, one stream per metric (``SEED_OFFSET``).
What each metric is, for M ≥ 2 modalities, and its reference: docs/evaluation.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import permutations
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from mgmvae.data.paired import PairedData
from mgmvae.evaluation.clustering import clustering_scores, kmeans_assignments
from mgmvae.evaluation.coherence import conditional_coherence, joint_coherence
from mgmvae.evaluation.likelihood import evaluate_log_likelihood
from mgmvae.evaluation.probe import FittedProbe, fit_like, fit_linear_probe, probe_accuracy
from mgmvae.evaluation.quality import gather_features, image_quality, label_entropy
from mgmvae.evaluation.retrieval import top1_retrieval
from mgmvae.evaluation.subsets import Subset, generation_name, generations, mean_by_size, subset_name, subsets
from mgmvae.seeding import seeded

if TYPE_CHECKING:
    from mgmvae.base import MultimodalVAE

# Offsets of each metric's seed from the run's seed: every metric draws from its own stream.
SEED_OFFSET = {"cross": 0, "embed": 1000, "joint": 2000, "probe_train": 3000, "subsets": 4000, "quality": 5000}
COHERENCE_OVER = ("pairs", "unique_images")

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


def _images(data: PairedData, split: str, rows: Tensor, modalities: Sequence[str], device: torch.device) -> Batch:
    """Float images of ``modalities``; ``rows`` [B, len(modalities)] indexes each one's images."""
    return {m: _to_float(data.images[m][split][rows[:, j]], device) for j, m in enumerate(modalities)}


def _pair_batch(
    data: PairedData, split: str, idx: Tensor, device: torch.device, modalities: Sequence[str] | None = None
) -> Batch:
    """The given pairs' images of ``modalities`` (default: all of them)."""
    names = list(data.modalities if modalities is None else modalities)
    rows = data.pairs[split][idx.to(data.device)][:, [data.modalities.index(m) for m in names]]
    return _images(data, split, rows, names, device)


def embed_pairs(
    model,
    data: PairedData,
    split: str,
    pair_index: Tensor,
    batch_size: int,
    progress: bool,
    protocol: str = "mean",
    modalities: Sequence[str] | None = None,
) -> Tensor:
    """Embedding of the given pairs from ``modalities`` (default: all of them, the joint embedding)."""
    device = model_device(model)
    names = list(data.modalities if modalities is None else modalities)
    fn = lambda i: model.embed(_pair_batch(data, split, pair_index[i], device, names), names, protocol)  # noqa: E731
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


def coherence_items(data: PairedData, subset: Subset, over: str) -> Tensor:
    """Test image indices [n, |S|] (column j indexes the images of ``subset[j]``) that coherence
    from ``subset`` is scored over: every test pair's (``pairs``), or each distinct input once
    (``unique_images``: every test image of one source modality; the distinct tuples of the test
    pairs for several)."""
    if over not in COHERENCE_OVER:
        raise ValueError(f"config key 'evaluation.coherence_over': {over!r} is not one of {COHERENCE_OVER}")
    if over == "unique_images" and len(subset) == 1:
        return torch.arange(len(data.images[subset[0]]["test"]), device=data.device)[:, None]
    rows = data.pairs["test"][:, [data.modalities.index(m) for m in subset]]
    return rows if over == "pairs" else torch.unique(rows, dim=0)


def _coherence(
    model,
    data: PairedData,
    classifier: nn.Module,
    subset: Subset,
    target: str,
    protocol: str,
    settings: Mapping[str, Any],
    progress: bool,
) -> dict[str, float]:
    """Conditional coherence from ``subset`` to ``target`` over the test items of ``coherence_over``."""
    device, items = model_device(model), coherence_items(data, subset, settings["coherence_over"])
    source = _source(subset)

    def generate(index: Tensor) -> Tensor:
        batch = _images(data, "test", items[index.to(items.device)], subset, device)
        return model.generate(batch, source, target, protocol)

    labels = data.labels[subset[0]]["test"][items[:, 0]]  # every modality of a pair shares its label
    return conditional_coherence(generate, labels, classifier, int(settings["batch_size"]), progress)


def evaluate_model(
    model: MultimodalVAE,
    data: PairedData,
    classifiers: Mapping[str, nn.Module],
    settings: Mapping[str, Any],
    seed: int,
    *,
    protocol: str,
    progress: bool = False,
    inception: nn.Module | None = None,
) -> dict:
    """Tables 1-3 metrics, their M-modality readings, joint coherence, generative quality and
    clustering for one trained model; a JSON-able dict of dicts of numbers, keyed as ``METRIC_KEYS``
    describes. ``settings`` is the config's ``evaluation`` section; ``protocol`` the resolved one
    (``mean`` or ``sample``); ``inception``: the Inception FID feature network, or None (no Inception FID)."""
    bs = int(settings["batch_size"])
    modalities = list(data.modalities)
    device = model_device(model)
    was_training, reading = getattr(model, "training", False), getattr(model, "mixture_reading", None)
    model.eval()
    model.mixture_reading = settings["mixture_reading"]
    try:
        with torch.no_grad():
            # Table 1 and conditional coherence: each target from every subset of the modalities.
            with seeded(seed + SEED_OFFSET["cross"], device):
                coherence = {
                    (s, t): _coherence(model, data, classifiers[t], s, t, protocol, settings, progress)
                    for s, t in generations(modalities, settings["coherence_targets"])
                }
            n_joint = int(settings["joint_coherence_samples"])
            with seeded(seed + SEED_OFFSET["joint"], device):
                joint = joint_coherence(model.sample, n_joint, classifiers, bs, progress)
            with seeded(seed + SEED_OFFSET["quality"], device):
                quality = generative_quality(model, data, classifiers, settings, seed, protocol, inception)

            # Unimodal test embeddings serve both the probe (Table 2) and retrieval (Table 3).
            with seeded(seed + SEED_OFFSET["embed"], device):
                uni = {m: embed_unimodal(model, data, m, "test", bs, progress, protocol) for m in modalities}
                test_pairs = torch.arange(data.num_pairs("test"))
                joint_test = embed_pairs(model, data, "test", test_pairs, bs, progress, protocol)
            uni_y = {m: data.labels[m]["test"] for m in modalities}
            joint_test_y = data.pair_labels("test")

            # Table 2: subsample train pairs before embedding them (1M pairs would be wasted work).
            train_idx = _subsample(data.num_pairs("train"), settings["probe_max_train"], seed)
            with seeded(seed + SEED_OFFSET["probe_train"], device):
                train_z = embed_pairs(model, data, "train", train_idx, bs, progress, protocol)
            train_y = data.pair_labels("train", train_idx.to(data.device))
            probe = fit_linear_probe(train_z, train_y, seed, settings)
            tests = {m: (uni[m], uni_y[m]) for m in modalities} | {"joint": (joint_test, joint_test_y)}
            accuracy = probe_accuracy(probe, tests)
            with seeded(seed + SEED_OFFSET["subsets"], device):
                by_subset = _probe_by_subset(
                    model, data, probe, accuracy["joint"], train_idx, settings, seed, protocol, progress
                )

            # Table 3: every test image of the source queries every test image of the target.
            chunk = int(settings["retrieval_chunk"])
            retrieval = {
                f"{s}->{t}": top1_retrieval(uni[s], uni_y[s], uni[t], uni_y[t], chunk=chunk)
                for s, t in permutations(modalities, 2)
            }

            clustering = _clustering(model, data, joint_test, joint_test_y, settings, seed, progress)
            likelihood = run_log_likelihood(model, data, settings, seed, progress)
    finally:
        model.train(was_training)
        if reading is not None:
            model.mixture_reading = reading
    return {
        "cross_generation": {generation_name(s, t): v["accuracy"] for (s, t), v in coherence.items()},
        "cross_generation_balanced": {generation_name(s, t): v["balanced_accuracy"] for (s, t), v in coherence.items()},
        "joint_coherence": {"joint": joint, "samples": n_joint},
        "probe": accuracy,
        "probe_selection": probe.selection,
        "retrieval_top1": retrieval,
        "clustering": clustering,
        "conditional_coherence": mean_by_size((len(s), v["accuracy"]) for (s, _), v in coherence.items()),
        "conditional_coherence_targets": {"given_included": settings["coherence_targets"] == "all"},
        "conditional_coherence_balanced": mean_by_size(
            (len(s), v["balanced_accuracy"]) for (s, _), v in coherence.items()
        ),
        "probe_by_subset": {subset_name(s): v for s, v in by_subset.items()},
        "probe_by_subset_size": mean_by_size((len(s), v) for s, v in by_subset.items()),
        "retrieval_mean": {"top1": sum(retrieval.values()) / len(retrieval)},
    } | {key: value for key, value in (("generative_quality", quality), ("log_likelihood", likelihood)) if value}


METRIC_KEYS = {
    "cross_generation": "Table 1: plain accuracy of each conditional generation 'S->t' (S: source modalities "
    "joined by ',', t a modality outside S); with one source, Table 1's direction 'src->tgt' (the paper's reading)",
    "cross_generation_balanced": "the same, mean of per-class accuracies (MultiVae's reading)",
    "joint_coherence": "'joint': fraction of prior draws whose modalities' classifiers all agree; 'samples': N",
    "probe": "Table 2, accuracy of the probe fitted on joint latents per test set: each modality alone and 'joint'",
    "probe_selection": "the probe: 'method', and 'C', 'cv_accuracy', 'folds' (logistic_cv) or its training settings",
    "retrieval_top1": "Table 3, top-1 retrieval between every ordered pair of modalities 'src->tgt'",
    "clustering": "clustering of the joint latent: accuracy, nmi, ari, 'method', 'k'",
    "conditional_coherence": "'k': mean of cross_generation over the subsets S of k given modalities and their "
    "targets, outside S (k = 1 .. M-1, MultiVae's) or every modality (k = 1 .. M, MoPoE's)",
    "conditional_coherence_targets": "'given_included': whether coherence scored every target (MoPoE's)",
    "conditional_coherence_balanced": "the same from cross_generation_balanced",
    "probe_by_subset": "accuracy of a probe per subset 'S' fitted on the training pairs' S-embeddings, tested "
    "on the test pairs' (MoPoE's latent classification); the full set's is Table 2's 'joint'",
    "probe_by_subset_size": "'k': mean of probe_by_subset over the subsets of size k (k = 1 .. M)",
    "retrieval_mean": "'top1': mean of retrieval_top1 over the ordered pairs of modalities",
    "generative_quality": "'prior' (model.sample) and 'conditional' (each modality from all the others, 'S->t'): "
    "per modality and their 'mean', fd_classifier, precision, recall (prior also label_entropy; fid_inception with "
    "Inception weights), against the modality's test images; 'settings': samples, k (mgmvae/evaluation/quality.py)",
    "log_likelihood": (
        "test log-likelihood (nats per pair): 'joint', each modality alone, the 'estimator' settings and its "
        "'quality' (normalised density, ESS floor; per estimate mean ESS, fraction of pairs under the floor, "
        "reliable, draws)"
    ),
}


def _probe_by_subset(
    model,
    data: PairedData,
    probe: FittedProbe,
    joint_accuracy: float,
    train_idx: Tensor,
    settings: Mapping[str, Any],
    seed: int,
    protocol: str,
    progress: bool,
) -> dict[Subset, float]:
    """Test accuracy of a probe per non-empty subset, fitted on that subset's training embeddings
    like Table 2's (``probe.fit_like``); the full set's is Table 2's joint probe itself."""
    bs = int(settings["batch_size"])
    train_y = data.pair_labels("train", train_idx.to(data.device))
    test_pairs = torch.arange(data.num_pairs("test"))
    out = {}
    for subset in subsets(data.modalities, proper=True):
        train_z = embed_pairs(model, data, "train", train_idx, bs, progress, protocol, subset)
        test_z = embed_pairs(model, data, "test", test_pairs, bs, progress, protocol, subset)
        fitted = fit_like(probe.selection, train_z, train_y, seed, settings)
        out[subset] = probe_accuracy(fitted, {"test": (test_z, data.pair_labels("test"))})["test"]
    return out | {tuple(data.modalities): joint_accuracy}


def run_log_likelihood(model, data: PairedData, settings: Mapping[str, Any], seed: int, progress: bool) -> dict | None:
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


def generative_quality(
    model,
    data: PairedData,
    classifiers: Mapping[str, nn.Module],
    settings: Mapping[str, Any],
    seed: int,
    protocol: str,
    inception: nn.Module | None,
) -> dict | None:
    """``evaluation.quality_samples`` prior draws, and as many generations of each modality from all
    the others (seeded test tuples), each scored against as many of its test images (None: skipped)."""
    n, bs, k = int(settings["quality_samples"]), int(settings["batch_size"]), int(settings["quality_k"])
    if n == 0:
        return None
    device, modalities = model_device(model), list(data.modalities)

    def real(m: str):
        images = data.images[m]["test"]
        for i in _subsample(len(images), n, seed + 4).split(bs):
            yield {m: _to_float(images[i.to(images.device)], device)}

    def generated(t: str, given: list[str]):
        for i in _subsample(data.num_pairs("test"), n, seed + 5).split(bs):
            yield {t: model.generate(_pair_batch(data, "test", i, device, given), _source(given), t, protocol)}

    tests = {m: gather_features(real(m), classifiers, inception)[m] for m in modalities}
    prior = gather_features((model.sample(min(bs, n - s)) for s in range(0, n, bs)), classifiers, inception)
    out: dict[str, dict] = {"prior": {}, "conditional": {}}
    for t in modalities:
        entropy = {"label_entropy": label_entropy(prior[t]["logits"])}
        out["prior"][t] = image_quality(tests[t], prior[t], k, bs) | entropy
        given = [m for m in modalities if m != t]
        fake = gather_features(generated(t, given), classifiers, inception)[t]
        out["conditional"][generation_name(tuple(given), t)] = image_quality(tests[t], fake, k, bs)
    for kind in out.values():
        kind["mean"] = {key: sum(v[key] for v in kind.values()) / len(kind) for key in next(iter(kind.values()))}
    return out | {"settings": {"samples": n, "k": k}}


def _source(subset: Sequence[str]) -> str | list[str]:
    """A generation's source: one modality by its name, several as a list."""
    return subset[0] if len(subset) == 1 else list(subset)
