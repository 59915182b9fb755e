rule train_classifier:
    input:
        data=f"{STUDY}/data/{{dataset}}.pt",
    output:
        weights=f"{STUDY}/classifiers/{{dataset}}/{{modality}}.pt",
        metrics=f"{STUDY}/classifiers/{{dataset}}/{{modality}}.json",
    log:
        f"{STUDY}/logs/classifiers/{{dataset}}/{{modality}}.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1 if config["device"] != "cpu" else 0,
    params:
        cli=MGMVAE,
        config=STUDY_CONFIG,
        classifier=json.dumps(config["classifier"], sort_keys=True),
    shell:
        "{params.cli} classifier --config {params.config} --dataset {wildcards.dataset} "
        "--modality {wildcards.modality} --data {input.data} --out {output.weights} "
        "--threads {threads} --no-progress > {log} 2>&1"
