rule evaluate_run:
    input:
        model=f"{STUDY}/runs/{{dataset}}/{{model}}/seed{{seed}}/model.pt",
        data=f"{STUDY}/data/{{dataset}}.pt",
        classifiers=lambda w: [f"{STUDY}/classifiers/{w.dataset}/{m}.pt" for m in modalities_of(w.dataset)],
    output:
        f"{STUDY}/runs/{{dataset}}/{{model}}/seed{{seed}}/metrics.json",
    log:
        f"{STUDY}/logs/evaluate/{{dataset}}/{{model}}/seed{{seed}}.log",
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
    shell:
        "{params.cli} evaluate --config {params.config} --dataset {wildcards.dataset} --model {wildcards.model} "
        "--seed {wildcards.seed} --data {input.data} --model-file {input.model} "
        "--classifiers {input.classifiers} --out {output} --threads {threads} --no-progress > {log} 2>&1"
