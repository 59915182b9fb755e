# train_ablation (ablation.smk) inherits this, with its own paths and params.
rule train_model:
    input:
        data=DATA,
    output:
        model=paths.model_file(RUN),
        history=paths.history_file(RUN),
    log:
        paths.run_log(config, "train", "{dataset}", "{model}", "{seed}"),
    benchmark:
        paths.benchmark_file(paths.run_log(config, "train", "{dataset}", "{model}", "{seed}"))
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=6000,
        runtime=240,
        gpu=GPU_JOB,
    params:
        cli=MGMVAE,
        config=STUDY_CONFIG,
        settings=settings_json,
        run="--model {model}",  # the run's CLI arguments beside dataset and seed
        progress="",
    shell:
        "{params.cli} train --config {params.config} --dataset {wildcards.dataset} {params.run} "
        "--seed {wildcards.seed} --data {input.data} --out {output.model} --threads {threads} "
        "{params.progress} > {log} 2>&1"
