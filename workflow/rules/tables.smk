from mgmvae.tables.resources import RESOURCES
from mgmvae.tables.spec import EXTENSIONS, table_names

TABLE_NAMES = table_names()  # the tables of mgmvae/tables/spec.py
TABLES_DIR = paths.tables_dir(config)


rule tables:
    input:
        metrics=EVERY_PROTOCOL_METRICS,
        figures=ALL_FIGURES,  # attached to the tables run in MLflow, beside the tables
        benchmarks=all_benchmarks(),  # every upstream job's: the resources table
    output:
        expand(
            TABLES_DIR / "{table}.{ext}", table=[*TABLE_NAMES, RESOURCES], ext=[e for e in EXTENSIONS if e != "html"]
        ),
        [
            report(TABLES_DIR / f"{t}.html", caption=f"../report/{t}.rst", category="Tables", labels={"table": t})
            for t in TABLE_NAMES
        ],
        report(TABLES_DIR / f"{RESOURCES}.html", caption=f"../report/{RESOURCES}.rst", category="Resources"),
    log:
        paths.log_file(config, "tables"),
    benchmark:
        paths.benchmark_file(paths.log_file(config, "tables"))
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cli=MGMVAE,
        outdir=lambda w, output: os.path.dirname(output[0]),
        config=STUDY_CONFIG,
        tables=json.dumps(config["tables"], sort_keys=True),
    shell:
        "{params.cli} tables --config {params.config} --metrics {input.metrics} --figures {input.figures} "
        "--benchmarks {input.benchmarks} --outdir {params.outdir} > {log} 2>&1"
