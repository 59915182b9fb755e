# The ablation study (config `ablation`), run by `snakemake ablation`; not part of the default target.
# `ablation.model` is trained and evaluated once per variant × dataset × seed by the same
# `python -m mgmvae train/evaluate` stages as every run, with `--variant NAME`: the variant's
# overrides go on top of the resolved settings (mgmvae.config.run_settings), the run lives in
# results/<study>/ablation/<dataset>/<variant>/seed<k>/ and its MLflow runs carry a `variant` tag.
# The aggregation (target `ablation`) writes ablation/ablation_table.{csv,md} and
# ablation/ablation_plot_<dataset>.{png,pdf}.
import re

from mgmvae.config import ablation_datasets, ablation_seeds, ablation_variants

ABLATION = config.get("ablation") or {}
ABLATION_MODEL = run_names([ABLATION.get("model", "mgmvae")])[0]  # a plugin's path becomes its run name
ABLATION_DATASETS = ablation_datasets(config) if ABLATION else []
ABLATION_SEEDS = ablation_seeds(config) if ABLATION else []
ABLATION_VARIANTS = ablation_variants(config)
ABLATION_DIR = f"{STUDY}/ablation"
ABLATION_RUN = f"{ABLATION_DIR}/{{dataset}}/{{variant}}/seed{{seed}}"
# In declaration order: the table and plots list the variants in this order.
ABLATION_METRICS = [
    f"{ABLATION_DIR}/{d}/{v}/seed{s}/metrics.json"
    for d in ABLATION_DATASETS
    for v in ABLATION_VARIANTS
    for s in ABLATION_SEEDS
]


rule train_ablation:
    input:
        data=f"{STUDY}/data/{{dataset}}.pt",
    output:
        model=f"{ABLATION_RUN}/model.pt",
        history=f"{ABLATION_RUN}/history.json",
    log:
        f"{STUDY}/logs/ablation/train/{{dataset}}/{{variant}}/seed{{seed}}.log",
    wildcard_constraints:
        variant="|".join(re.escape(v) for v in ABLATION_VARIANTS) or "(?!)",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=1 if config["device"] != "cpu" else 0,
    params:
        cli=MGMVAE,
        config=STUDY_CONFIG,
        model=ABLATION_MODEL,
        # the variant's resolved settings: a change reruns exactly the affected ablation runs
        settings=lambda w: json.dumps(run_settings(config, w.dataset, ABLATION_MODEL, w.variant), sort_keys=True),
    shell:
        "{params.cli} train --config {params.config} --dataset {wildcards.dataset} --model {params.model} "
        "--variant {wildcards.variant} --seed {wildcards.seed} --data {input.data} --out {output.model} "
        "--threads {threads} --no-progress > {log} 2>&1"


rule evaluate_ablation:
    input:
        model=f"{ABLATION_RUN}/model.pt",
        data=f"{STUDY}/data/{{dataset}}.pt",
        classifiers=lambda w: [f"{STUDY}/classifiers/{w.dataset}/{m}.pt" for m in modalities_of(w.dataset)],
    output:
        f"{ABLATION_RUN}/metrics.json",
    log:
        f"{STUDY}/logs/ablation/evaluate/{{dataset}}/{{variant}}/seed{{seed}}.log",
    wildcard_constraints:
        variant="|".join(re.escape(v) for v in ABLATION_VARIANTS) or "(?!)",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        cli=MGMVAE,
        config=STUDY_CONFIG,
        model=ABLATION_MODEL,
        evaluation=json.dumps(config["evaluation"], sort_keys=True),
    shell:
        "{params.cli} evaluate --config {params.config} --dataset {wildcards.dataset} --model {params.model} "
        "--variant {wildcards.variant} --seed {wildcards.seed} --data {input.data} --model-file {input.model} "
        "--classifiers {input.classifiers} --out {output} --threads {threads} --no-progress > {log} 2>&1"


rule ablation:
    input:
        ABLATION_METRICS,
    output:
        table=expand(f"{ABLATION_DIR}/ablation_table.{{ext}}", ext=["csv", "md"]),
        plots=expand(f"{ABLATION_DIR}/ablation_plot_{{dataset}}.{{ext}}", dataset=ABLATION_DATASETS, ext=["png", "pdf"]),
    log:
        f"{STUDY}/logs/ablation/ablation.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        cli=MGMVAE,
        config=STUDY_CONFIG,
        outdir=lambda w, output: os.path.dirname(output.table[0]),
        study=json.dumps({k: v for k, v in ABLATION.items() if k != "variants"}, sort_keys=True),
    shell:
        "{params.cli} ablation --config {params.config} --metrics {input} --outdir {params.outdir} > {log} 2>&1"
