# The ablation study (config `ablation`), run by `snakemake ablation`; not part of the default target.
# `ablation.model` is trained and evaluated once per variant × dataset × seed by the rules of every
# run with their own paths and `--variant NAME`: the variant's overrides go on top of the resolved
# settings (mgmvae.registry.run_settings), the run lives in results/<study>/ablation/<dataset>/<variant>/seed<k>/
# and its MLflow runs carry a `variant` tag. The aggregation (target `ablation`) writes
# ablation/ablation_table.{csv,md,tex,html} and ablation/ablation_plot_<dataset>.{png,pdf}.
import re

from mgmvae.config import ablation_datasets, ablation_variants
from mgmvae.figures.ablation import PLOT as ABLATION_PLOT
from mgmvae.tables.ablation import NAME as ABLATION_TABLE

ABLATION = config["ablation"]
ABLATION_MODEL = run_names([ABLATION["model"]])[0]  # a plugin's path becomes its run name
ABLATION_DATASETS = ablation_datasets(config)
ABLATION_DIR = paths.ablation_dir(config)
ABLATION_RUN = paths.run_dir(config, "{dataset}", ABLATION_MODEL, "{seed}", "{variant}")
ABLATION_CLI = f"--model {ABLATION_MODEL} --variant {{variant}}"  # the run's CLI arguments beside dataset and seed
ABLATION_VARIANT = "|".join(re.escape(v) for v in ablation_variants(config)) or "(?!)"


use rule train_model as train_ablation with:
    output:
        model=paths.model_file(ABLATION_RUN),
        history=paths.history_file(ABLATION_RUN),
    log:
        paths.run_log(config, "ablation/train", "{dataset}", "{variant}", "{seed}"),
    benchmark:
        paths.benchmark_file(paths.run_log(config, "ablation/train", "{dataset}", "{variant}", "{seed}"))
    wildcard_constraints:
        variant=ABLATION_VARIANT,
    params:
        # the variant's resolved settings: a change reruns exactly the affected ablation runs
        settings=lambda w: json.dumps(run_settings(config, w.dataset, ABLATION_MODEL, w.variant), sort_keys=True),
        run=ABLATION_CLI,
        progress="--no-progress",


use rule evaluate_run as evaluate_ablation with:
    input:
        model=paths.model_file(ABLATION_RUN),
        data=DATA,
        classifiers=classifier_files,
    output:
        paths.metrics_files(config, ABLATION_RUN),
    log:
        paths.run_log(config, "ablation/evaluate", "{dataset}", "{variant}", "{seed}"),
    benchmark:
        paths.benchmark_file(paths.run_log(config, "ablation/evaluate", "{dataset}", "{variant}", "{seed}"))
    wildcard_constraints:
        variant=ABLATION_VARIANT,
    params:
        run=ABLATION_CLI,


rule ablation:
    input:
        paths.run_files(config, paths.ablation_runs(config, ABLATION_MODEL)),  # the variants in declaration order
    output:
        table=expand(ABLATION_DIR / f"{ABLATION_TABLE}.{{ext}}", ext=[e for e in EXTENSIONS if e != "html"]),
        html=report(
            ABLATION_DIR / f"{ABLATION_TABLE}.html",
            caption=f"../report/{ABLATION_TABLE}.rst",
            category="Tables",
            labels={"table": "ablation"},
        ),
        plots=expand(ABLATION_DIR / f"{ABLATION_PLOT}.{{ext}}", dataset=ABLATION_DATASETS, ext=FIGURE_FORMATS),
    log:
        paths.log_file(config, "ablation", "ablation"),
    benchmark:
        paths.benchmark_file(paths.log_file(config, "ablation", "ablation"))
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cli=MGMVAE,
        config=STUDY_CONFIG,
        outdir=lambda w, output: os.path.dirname(output.table[0]),
        study=json.dumps({k: v for k, v in ABLATION.items() if k != "variants"}, sort_keys=True),
    shell:
        "{params.cli} ablation --config {params.config} --metrics {input} --outdir {params.outdir} > {log} 2>&1"
