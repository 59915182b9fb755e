# MGMVAE benchmark: dataset construction -> digit classifiers -> training -> evaluation -> tables.
#   snakemake --cores 8 --use-conda                                  the paper setting (config.yaml)
#   snakemake --cores 2 --configfile workflow/presets/quick.yaml     offline, CPU, embedded digits
# Each rule runs one `python -m mgmvae <stage>` command; see docs/architecture.md.

import os

from snakemake.utils import min_version

min_version("9.0")


# The paper setting, found beside this Snakefile whatever the working directory (-d).
configfile: os.path.join(workflow.basedir, "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/classifiers.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/ablation.smk"  # `snakemake ablation`; not in the default target


rule all:
    default_target: True
    input:
        rules.tables.output,
        rules.figures.input,
