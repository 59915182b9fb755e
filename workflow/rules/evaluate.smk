# evaluate_ablation (ablation.smk) inherits this, with its own paths and params.
rule evaluate_run:
    input:
        model=paths.model_file(RUN),
        data=DATA,
        classifiers=classifier_files,
    output:
        paths.metrics_files(config, RUN),  # one per protocol; the first is paths.metrics_file
    log:
        paths.run_log(config, "evaluate", "{dataset}", "{model}", "{seed}"),
    benchmark:
        paths.benchmark_file(paths.run_log(config, "evaluate", "{dataset}", "{model}", "{seed}"))
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=GPU_JOB,
    params:
        cli=MGMVAE,
        config=STUDY_CONFIG,
        evaluation=json.dumps(config["evaluation"], sort_keys=True),
        run="--model {model}",  # the run's CLI arguments beside dataset and seed
        out=lambda w, output: output[0],  # the first protocol's file; the stage writes the others beside it
    shell:
        "{params.cli} evaluate --config {params.config} --dataset {wildcards.dataset} {params.run} "
        "--seed {wildcards.seed} --data {input.data} --model-file {input.model} "
        "--classifiers {input.classifiers} --out {params.out} --threads {threads} --no-progress > {log} 2>&1"
