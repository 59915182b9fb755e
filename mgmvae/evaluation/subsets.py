"""Subsets of modalities, their names in the metrics files, and means by subset size.

The M-modality metrics read every non-empty subset S of the M modalities, in one fixed order: by
size, then in ``itertools.combinations`` order of the dataset's modalities (for two modalities
(m0,), (m1,), (m0, m1)). A subset is named by its modalities joined with ","; a generation from S
to a target t by "S->t" (for one source modality "m0->m1", Table 1's key).

Conditional coherence from S scores (``evaluation.coherence_targets``) ``outside``: the modalities
outside S, S proper (MultiVae's ``CoherenceEvaluator.coherence_from_subset``, include_recon False);
or ``all``: every modality, S any non-empty subset (thomassutter/MoPoE ``test_generation``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import combinations

Subset = tuple[str, ...]


def subsets(modalities: Sequence[str], proper: bool = False) -> list[Subset]:
    """Every non-empty subset of ``modalities`` by size (without the full set when ``proper``)."""
    largest = len(modalities) - 1 if proper else len(modalities)
    return [s for k in range(1, largest + 1) for s in combinations(modalities, k)]


def subset_name(subset: Subset) -> str:
    return ",".join(subset)


def generation_name(subset: Subset, target: str) -> str:
    return f"{subset_name(subset)}->{target}"


COHERENCE_TARGETS = ("outside", "all")


def generations(modalities: Sequence[str], targets: str) -> list[tuple[Subset, str]]:
    """(S, t) scored by conditional coherence (module docstring): ``outside``, every non-empty proper
    subset S and every modality t outside it; ``all``, every non-empty subset S and every t."""
    if targets not in COHERENCE_TARGETS:
        raise ValueError(f"config key 'evaluation.coherence_targets': {targets!r} is not one of {COHERENCE_TARGETS}")
    every = targets == "all"
    return [(s, t) for s in subsets(modalities, proper=not every) for t in modalities if every or t not in s]


def mean_by_size(sized: Iterable[tuple[int, float]]) -> dict[str, float]:
    """{"k": mean of the values whose subset has size k}, sizes ascending (string keys, for JSON).

    Over the (S, t) of ``generations`` this is the mean over the subsets of a size of each subset's
    mean over its targets (MultiVae's ``cross_coherences``): every subset of size k has the same
    number of targets (M − k, or M under ``all``), so both means agree."""
    groups: dict[int, list[float]] = {}
    for size, value in sized:
        groups.setdefault(size, []).append(value)
    return {str(k): sum(v) / len(v) for k, v in sorted(groups.items())}
