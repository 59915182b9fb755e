"""The generative-quality table (``spec.GENERATIVE``): one section per dataset that the study's
tables name and per protocol setting, with the seed statistics, marks and paired tests of Tables
1–3 (``paper_table.table_doc``); its .csv names each row's dataset."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

import mgmvae.tables.protocols as protocols
from mgmvae.tables.paper_table import caption, table_doc
from mgmvae.tables.render import TableDoc, write_empty, write_sections, write_table
from mgmvae.tables.spec import DASH, GENERATIVE

NOTES = [
    "Prior: `evaluation.quality_samples` prior draws; conditional: as many generations of each modality from all "
    "the others; each scored against as many test images of the modality, on the penultimate features of the "
    "study's own digit classifier of that modality, then averaged over modalities (each modality's numbers: the "
    "runs' metrics.json and MLflow).",
    "Label entropy: the entropy of the digits the classifier reads on the prior draws over log 10: 1 = every digit "
    "equally often, 0 = one digit (a collapsed model, whatever its joint coherence).",
    "Classifier FD: the Fréchet distance on the classifier's features (FID's formula, not Inception FID; smaller "
    "is better). Precision: the share of generated images inside the k-NN manifold of the test images (quality); "
    "recall: the share of test images inside that of the generated ones (diversity); Kynkäänniemi et al. 2019.",
    "Inception FID: torchvision's Inception-v3 (ImageNet weights, pool3, 299×299), not pytorch-fid's; "
    f"{DASH}: not computed (`evaluation.inception_weights: null`).",
]


def generative_table(df: pd.DataFrame, study: str | None, table_datasets: Mapping[str, str | None], outdir: Path):
    """``generative_quality.{csv,md,tex,html}`` for the datasets ``table_datasets`` names."""
    docs: dict[str, TableDoc] = {}
    for dataset in dict.fromkeys(d for d in table_datasets.values() if d):
        for setting, frame in protocols.by_setting(df).items():
            title = caption(GENERATIVE, study, dataset, protocols.describe(setting, frame))
            label = f"{study}-quality-{dataset}-{setting}".replace(" ", "-")
            doc = table_doc(frame, GENERATIVE, dataset, title, label)
            if doc is not None:
                doc.numbers.insert(0, "dataset", dataset)
                doc.notes += NOTES
                docs[f"{dataset}, protocol {setting}"] = doc
    title = f"{GENERATIVE.number} — {GENERATIVE.what}, study `{study}`"
    if not docs:
        message = "No generative-quality results in this study (`evaluation.quality_samples: 0`, or none named)."
        write_empty(outdir, GENERATIVE.name, title, message, ["dataset", "model", "name", "n_seeds"])
    elif len(docs) == 1:
        write_table(outdir, GENERATIVE.name, next(iter(docs.values())))
    else:
        write_sections(outdir, GENERATIVE.name, title, docs)
