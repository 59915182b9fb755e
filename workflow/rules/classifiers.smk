rule train_classifier:
    input:
        data=DATA,
    output:
        weights=paths.classifier_file(config, "{dataset}", "{modality}"),
        metrics=paths.classifier_record(paths.classifier_file(config, "{dataset}", "{modality}")),
    log:
        paths.log_file(config, "classifiers", "{dataset}", "{modality}"),
    benchmark:
        paths.benchmark_file(paths.log_file(config, "classifiers", "{dataset}", "{modality}"))
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=GPU_JOB,
    params:
        cli=MGMVAE,
        config=STUDY_CONFIG,
        classifier=lambda w: json.dumps(classifier_settings(config, w.dataset)[0], sort_keys=True),
    shell:
        "{params.cli} classifier --config {params.config} --dataset {wildcards.dataset} "
        "--modality {wildcards.modality} --data {input.data} --out {output.weights} "
        "--threads {threads} --no-progress > {log} 2>&1"
