rule train_model:
    input:
        data=f"{STUDY}/data/{{dataset}}.pt",
    output:
        model=f"{STUDY}/runs/{{dataset}}/{{model}}/seed{{seed}}/model.pt",
        history=f"{STUDY}/runs/{{dataset}}/{{model}}/seed{{seed}}/history.json",
    log:
        f"{STUDY}/logs/train/{{dataset}}/{{model}}/seed{{seed}}.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=1 if config["device"] != "cpu" else 0,
    params:
        cli=MGMVAE,
        config=STUDY_CONFIG,
        settings=settings_json,
    shell:
        "{params.cli} train --config {params.config} --dataset {wildcards.dataset} --model {wildcards.model} "
        "--seed {wildcards.seed} --data {input.data} --out {output.model} --threads {threads} > {log} 2>&1"
