# Figures (mgmvae/figures/): the paper's Figures 3–7 for every model (cross-generation grids,
# translation grids, retrieval panels), a t-SNE of the shared latent, training curves, bar charts
# of Tables 1–3 with seed intervals and, where `tables.polymnist` names a dataset, coherence against
# the number of given modalities; PNG and PDF under results/<study>/figures/<kind>/. The models of
# the first seed are shown; the bar charts and the coherence figure read the per-run metrics of
# every seed. One job per dataset plus one for the figures of the tables, so they draw in parallel. The PNGs go into
# `snakemake --report report.html`, each with its caption from workflow/report/<kind>.rst.
FIGURES_SEED = SEEDS[0]


FIGURE_PARAMS = dict(
    cli=MGMVAE,
    config=STUDY_CONFIG,
    outdir=lambda w, output: os.path.dirname(os.path.dirname(output.png[0])),  # <study>/figures
    seed=FIGURES_SEED,
    evaluation=json.dumps(config["evaluation"], sort_keys=True),
    figures=json.dumps(config["figures"], sort_keys=True),
    tables=json.dumps(config["tables"], sort_keys=True),
)


for _dataset in DATASETS:

    rule:
        name:
            f"figures_{_dataset}"
        input:
            data=paths.data_file(config, _dataset),
            models=[paths.model_file(paths.run_dir(config, _dataset, m, FIGURES_SEED)) for m in MODELS],
        output:
            png=[report(png, **flag) for png, flag in figure_pngs(FIGURE_SPECS[_dataset])],
            pdf=figure_pdfs(FIGURE_SPECS[_dataset]),
        log:
            paths.log_file(config, "figures", _dataset),
        benchmark:
            paths.benchmark_file(paths.log_file(config, "figures", _dataset))
        conda:
            CONDA_ENV
        threads: 1
        resources:
            mem_mb=6000,
            runtime=60,
            gpu=GPU_JOB,
        params:
            **FIGURE_PARAMS,
        shell:
            "{params.cli} figures --part datasets --config {params.config} --data {input.data} "
            "--model-files {input.models} --seed {params.seed} --outdir {params.outdir} --threads {threads} "
            "--no-progress > {log} 2>&1"


rule figures_bars:
    input:
        metrics=METRICS,
    output:
        png=[report(png, **flag) for png, flag in figure_pngs(FIGURE_SPECS["bars"])],
        pdf=figure_pdfs(FIGURE_SPECS["bars"]),
    log:
        paths.log_file(config, "figures", "bars"),
    benchmark:
        paths.benchmark_file(paths.log_file(config, "figures", "bars"))
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **FIGURE_PARAMS,
    shell:
        "{params.cli} figures --part bars --config {params.config} --metrics {input.metrics} "
        "--seed {params.seed} --outdir {params.outdir} --threads {threads} --no-progress > {log} 2>&1"


rule figures:
    input:
        ALL_FIGURES,
