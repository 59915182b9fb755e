# Figures (mgmvae/figures.py): the paper's Figures 3–7 for every model (cross-generation grids,
# translation grids, retrieval panels), a t-SNE of the shared latent, training curves and bar charts
# of Tables 1–3 with seed intervals; PNG and PDF under results/<study>/figures/<kind>/. The models of
# the first seed are shown; the bar charts read the per-run metrics of every seed. The PNGs go into
# `snakemake --report report.html`, each with its caption from workflow/report/<kind>.rst.
from mgmvae import paper as _paper
from mgmvae.figures import KINDS as FIGURE_KINDS
from mgmvae.figures import figure_specs

FIGURES = figure_specs({d: modalities_of(d) for d in DATASETS}, MODELS)
FIGURES_SEED = SEEDS[0]


rule figures:
    input:
        data=expand(f"{STUDY}/data/{{dataset}}.pt", dataset=DATASETS),
        models=[run_path(d, m, FIGURES_SEED, "model.pt") for d in DATASETS for m in MODELS],
        metrics=all_metrics(),
    output:
        png=[
            report(
                f"{STUDY}/figures/{spec['stem']}.png",
                caption=f"../report/{spec['kind']}.rst",
                category="Figures",
                subcategory=FIGURE_KINDS[spec["kind"]],
                labels={
                    "dataset": spec["dataset"],
                    "model": _paper.display_name(spec["model"]),
                    "direction": spec["direction"],
                },
            )
            for spec in FIGURES
        ],
        pdf=[f"{STUDY}/figures/{spec['stem']}.pdf" for spec in FIGURES],
    params:
        cli=MGMVAE,
        config=STUDY_CONFIG,
        outdir=lambda w, output: os.path.dirname(os.path.dirname(output.png[0])),  # <study>/figures
        seed=FIGURES_SEED,
        evaluation=json.dumps(config["evaluation"], sort_keys=True),
        tables=json.dumps(config["tables"], sort_keys=True),
    log:
        f"{STUDY}/logs/figures.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "{params.cli} figures --config {params.config} --data {input.data} --model-files {input.models} "
        "--metrics {input.metrics} --seed {params.seed} --outdir {params.outdir} --threads {threads} "
        "--no-progress > {log} 2>&1"
