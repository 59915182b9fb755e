# evaluate_ablation (ablation.smk) inherits this, with its own paths and params.
rule evaluate_run:
    input:
        model=RUN / "model.pt",
        data=DATA,
        classifiers=classifier_files,
    output:
        RUN / "metrics.json",
    log:
        paths.run_log(config, "evaluate", "{dataset}", "{model}", "{seed}"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        cli=MGMVAE,
        config=STUDY_CONFIG,
        evaluation=json.dumps(config["evaluation"], sort_keys=True),
        run="--model {model}",  # the run's CLI arguments beside dataset and seed
    shell:
        "{params.cli} evaluate --config {params.config} --dataset {wildcards.dataset} {params.run} "
        "--seed {wildcards.seed} --data {input.data} --model-file {input.model} "
        "--classifiers {input.classifiers} --out {output} --threads {threads} --no-progress > {log} 2>&1"
