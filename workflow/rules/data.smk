rule prepare_dataset:
    output:
        DATA,
    log:
        paths.log_file(config, "prepare", "{dataset}"),
    benchmark:
        paths.benchmark_file(paths.log_file(config, "prepare", "{dataset}"))
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cli=MGMVAE,
        config=STUDY_CONFIG,
        spec=lambda w: json.dumps(dataset_spec(config, w.dataset), sort_keys=True),
        data_seed=config["data_seed"],
    shell:
        "{params.cli} prepare --config {params.config} --dataset {wildcards.dataset} "
        "--out {output} --threads {threads} --no-progress > {log} 2>&1"
