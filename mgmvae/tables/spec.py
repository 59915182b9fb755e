"""What each table shows, declared: its metric keys, column labels and the paper's column beside each
(adding a column or a table: docs/architecture.md, "How to add …"). Keys may name the dataset's
modalities as ``{m0}`` and ``{m1}`` (in the order of its ``modalities``): our direction m0->m1 is
matched with the paper's first column (MNIST->SVHN, CD->CB) by position, because the stand-in
datasets name their modalities differently.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    metric: str  # section of the per-run metrics JSON ("cross_generation", "probe", ...)
    key: str  # key inside it; "{m0}" / "{m1}" stand for the dataset's modalities
    paper: str | None = None  # the paper's column (a key of mgmvae.paper.REPORTED's rows) printed beside ours
    label: str | None = None  # our column label (and CSV prefix); default: the resolved key
    lower: bool = False  # smaller is better (a distance): the marks and the paired test's best baseline follow

    def resolve(self, m0: str, m1: str) -> tuple[str, str]:
        """(label, key) with the modalities filled in."""
        key = self.key.format(m0=m0, m1=m1)
        return (self.label.format(m0=m0, m1=m1) if self.label else key), key


@dataclass(frozen=True)
class TableSpec:
    name: str  # file stem: <name>.{csv,md,tex,html}; bar chart figures/bars/<name>
    number: str  # "Table 1"
    what: str  # the caption's description
    columns: tuple[Column, ...]
    paper_on: str = ""  # the dataset the paper's numbers are from (notes)
    scale: float = 100.0  # metrics are stored as fractions: shown in percent
    decimals: int = 2  # as printed (marks rank on the printed mean)
    unit: str = "%"  # the bar chart's y label; "%" also fixes its range to 0–105
    bars: bool = True  # drawn as a bar chart
    reads: str = ""  # the config `tables` key naming its dataset (default: its name)
    by_protocol: bool = True  # one table per evaluation protocol; False: the metric does not depend on it
    quality: bool = False  # each column's estimator quality beside it (``quality.<key>.*`` of the metric)
    note: str = ""  # a line under the table


# Normalised entropy of the digits the classifiers read on prior draws (mean over modalities): 0
# when a model draws one digit only, whatever its joint coherence (mgmvae/evaluation/quality.py).
LABEL_ENTROPY = Column("generative_quality", "prior.mean.label_entropy", label="label entropy")

TABLE1 = TableSpec(
    "table1",
    "Table 1",
    "cross-modal generation accuracy (%)",
    (
        Column("cross_generation", "{m0}->{m1}", paper="MNIST->SVHN"),
        Column("cross_generation", "{m1}->{m0}", paper="SVHN->MNIST"),
        # MultiVae's reading: the mean of per-class accuracies (the paper reports plain accuracy).
        Column("cross_generation_balanced", "{m0}->{m1}", label="{m0}->{m1} balanced"),
        Column("cross_generation_balanced", "{m1}->{m0}", label="{m1}->{m0} balanced"),
        # MMVAE's joint coherence: prior draws on which both modalities' classifiers agree, beside
        # the spread of their digits (a model drawing one digit only agrees on every draw).
        Column("joint_coherence", "joint", label="joint"),
        LABEL_ENTROPY,
    ),
    paper_on="MNIST-SVHN",
)
TABLE2 = TableSpec(
    "table2",
    "Table 2",
    "linear-probe accuracy (%) on the shared latent",
    (
        Column("probe", "{m0}", paper="MNIST"),
        Column("probe", "{m1}", paper="SVHN"),
        Column("probe", "joint"),
    ),
    paper_on="MNIST-SVHN",
)
TABLE3 = TableSpec(
    "table3",
    "Table 3",
    "cross-modal retrieval top-1 accuracy (%)",
    (
        Column("retrieval_top1", "{m0}->{m1}", paper="CD->CB"),
        Column("retrieval_top1", "{m1}->{m0}", paper="CB->CD"),
    ),
    paper_on="MNIST-CDCB",
)
# Importance-sampled test log-likelihood (mgmvae/evaluation/likelihood.py), on Table 1's dataset
# as MMVAE reports it on MNIST-SVHN; in nats per pair, higher is better; the paper has none. The
# estimator draws from the posterior whatever the protocol, so one table serves every protocol;
# each estimate shows its effective sample size and whether it is reliable.
LOGLIK = TableSpec(
    "loglik",
    "Test log-likelihood",
    "importance-sampled test log-likelihood (nats per pair)",
    (
        Column("log_likelihood", "joint"),
        Column("log_likelihood", "{m0}"),
        Column("log_likelihood", "{m1}"),
    ),
    scale=1.0,
    decimals=1,
    unit="nats",
    bars=False,
    reads="table1",
    by_protocol=False,
    quality=True,
)
TABLE_SPECS: dict[str, TableSpec] = {spec.name: spec for spec in (TABLE1, TABLE2, TABLE3, LOGLIK)}

# The M-modality table (``mgmvae.tables.polymnist``): its columns follow the number of modalities
# M of its dataset, so its spec is built from the runs (``polymnist_spec``).
POLYMNIST = "polymnist"
TARGET_WORDS = {False: "the modalities outside the given ones, as MultiVae", True: "every modality, as MoPoE"}


def polymnist_spec(n_modalities: int, published: bool, given_included: bool) -> TableSpec:
    """Conditional coherence with k given modalities on the targets outside them (k < M) or,
    ``given_included``, on every target (k ≤ M), joint coherence, the probe with k = 1 .. M given and
    retrieval; with ``published`` (the released data, targets outside), the published PolyMNIST
    coherence of mgmvae.paper beside ours, as MultiVae sets it beside its own."""
    to = "all" if given_included else "others"
    paper = "coherence {}" if published and not given_included else None
    coherence = [
        Column("conditional_coherence", str(k), paper and paper.format(k), f"coherence {k} given → {to}")
        for k in range(1, n_modalities + given_included)
    ]
    probe = [Column("probe_by_subset_size", str(k), label=f"probe {k} given") for k in range(1, n_modalities + 1)]
    apart = "Published PolyMNIST coherence (mgmvae/paper.py) stands beside ours only on dataset `polymnist`, scored"
    return TableSpec(
        POLYMNIST,
        "PolyMNIST table",
        f"conditional coherence by number of given modalities (targets: {TARGET_WORDS[given_included]}), joint "
        "coherence, label entropy of prior draws, linear probe by number of given modalities and mean retrieval "
        "top-1 (%)",
        (*coherence, Column("joint_coherence", "joint", label="joint coherence"), LABEL_ENTROPY, *probe)
        + (Column("retrieval_mean", "top1", label="retrieval"),),
        paper_on="PolyMNIST by MoPoE and MMVAE+ (mgmvae/paper.py), scored as here by ClfImg with the released weights",
        bars=False,
        reads=POLYMNIST,
        note=""
        if paper
        else f"{apart} as MoPoE and MMVAE+ score it, on the targets outside the given modalities; "
        + ("these runs scored every target." if given_included else "this dataset's data and classifiers differ."),
    )


# Generative quality and diversity (mgmvae/evaluation/quality.py), one table per dataset that the
# study's tables name (``mgmvae.tables.generative``): per kind of generation, the mean over modalities.
GENERATIVE = TableSpec(
    "generative_quality",
    "Generative quality",
    "label entropy, classifier Fréchet distance, precision, recall and Inception FID of prior draws and "
    "of each modality generated from all the others (mean over modalities)",
    tuple(
        Column("generative_quality", f"{kind}.mean.{key}", label=f"{kind} {label}", lower=key.startswith("f"))
        for kind in ("prior", "conditional")
        for key, label in (
            ("label_entropy", "label entropy"),
            ("fd_classifier", "classifier FD"),
            ("precision", "precision"),
            ("recall", "recall"),
            ("fid_inception", "Inception FID"),
        )
        if kind == "prior" or key != "label_entropy"
    ),
    scale=1.0,
    unit="",
    bars=False,
)

# The clustering table (one per study, every dataset): its metric keys and their labels.
CLUSTER_KEYS = {"accuracy": "Accuracy", "nmi": "NMI", "ari": "ARI"}


def table_names() -> list[str]:
    """Every table's file stem: the paper tables, the M-modality, generative-quality and clustering tables."""
    return [*TABLE_SPECS, POLYMNIST, GENERATIVE.name, "clustering"]


EXTENSIONS = ("csv", "md", "tex", "html")

DATASET_NOTES = {
    "digits_street": "embedded stand-in for MNIST-SVHN",
    "digits_cdcb": "embedded stand-in for MNIST-CDCB",
    "mnist_svhn": "MNIST-SVHN, as in the paper",
    "mnist_cdcb": "MNIST-CDCB, as in the paper",
    "digits_poly": "embedded stand-in for PolyMNIST, scored by ClfImg trained here",
    "polymnist": "PolyMNIST, scored by ClfImg with the released weights, as MoPoE and MMVAE+",
}
# A table whose config `tables` key is null: the study has no dataset for it.
NOT_NAMED = "This study names no dataset for this table (config `tables.{key}: null`)."
OURS = "mgmvae"  # the model the paired test compares with the best baseline
DASH = "—"
