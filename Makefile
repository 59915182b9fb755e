# Two commands do everything on a fresh machine:  `make quick`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2
# Rules run `python -m mgmvae`: the venv's python must come first on PATH (as `source .venv/bin/activate`).
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: env quick test test-fast paper ablation clean

# The environment: torch first (its CPU or CUDA build, as pip finds it), then the project with
# every other pin. `pip install torch==2.13.0` on these machines takes the local CPU wheel.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

env: $(BIN)/.installed

# Offline, CPU, embedded digits data: datasets -> classifiers -> training -> evaluation ->
# tables and figures, then the self-contained report.
quick: env
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/presets/quick.yaml
	$(BIN)/snakemake --cores 1 --configfile workflow/presets/quick.yaml --report results/quick/report.html

# Unit tests plus the whole DAG end to end on the tiny CI preset.
test: env
	$(BIN)/python -m pytest -q

test-fast: env
	$(BIN)/python -m pytest -q -m "not slow"

# The paper setting (real MNIST/SVHN via torchvision; a GPU if present).
paper: env
	$(BIN)/snakemake --cores $(CORES)

ablation: env
	$(BIN)/snakemake ablation --cores $(CORES) --configfile workflow/presets/ablation_quick.yaml

clean:
	rm -rf results/quick results/ci .snakemake
