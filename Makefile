# Two commands do everything on a fresh machine:  `make quick`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2
# Rules run `python -m mgmvae`: the venv's python must come first on PATH (as `source .venv/bin/activate`).
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: env quick polymnist test test-fast lint format docs paper ablation bench bench-env gpu-check clean

# The environment: torch first (its CPU or CUDA build, as pip finds it), then the project with
# every other pin. `pip install torch==2.13.0` on these machines takes the local CPU wheel.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,lint,docs]'
	touch $@

env: $(BIN)/.installed

# Offline, CPU, embedded digits data: datasets -> classifiers -> training -> evaluation ->
# tables and figures, then the self-contained report.
quick: env
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/presets/quick.yaml
	$(BIN)/snakemake --cores 1 --configfile workflow/presets/quick.yaml --report results/quick/report.html

# The M-modality evaluation (the PolyMNIST table and figure): offline, CPU, the embedded stand-in
# for PolyMNIST (five modalities), all eight models; about 15 minutes on 2 cores.
polymnist: env
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/presets/polymnist_quick.yaml
	$(BIN)/snakemake --cores 1 --configfile workflow/presets/polymnist_quick.yaml --report results/polymnist_quick/report.html

# Unit tests plus the whole DAG end to end on the tiny CI preset. TEST_WORKERS pytest-xdist workers
# take a test module at a time, the modules with slow tests first (tests/conftest.py).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: env
	$(PYTEST)

test-fast: env
	$(PYTEST) -m "not slow"

# Lint, format, Snakefile style and types (settings in pyproject.toml); seconds, run by .ci/run.
lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint --cores 1 > /dev/null
	$(BIN)/mypy mgmvae baselines

# The documentation site under site/ (mkdocs.yml); --strict: a broken link or a missing page fails it.
docs: env
	$(BIN)/mkdocs build --strict

# Apply the formatters and the safe lint fixes.
format: env
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile workflow/rules

# The paper setting (real MNIST/SVHN via torchvision; a GPU if present).
paper: env
	$(BIN)/snakemake --cores $(CORES)

ablation: env
	$(BIN)/snakemake ablation --cores $(CORES) --configfile workflow/presets/ablation_quick.yaml

# Speed: training pairs/s per model (real loop vs bare forward+backward), peak memory, MultiVae
# side by side (if `make bench-env` was run), float32 and bfloat16 networks, 2 concurrent trainings,
# the quick preset's wall time. -> results/bench/summary.json and a table.
# `make bench BENCH_ARGS=` measures float32 alone and skips the (minutes-long) quick preset.
BENCH_ARGS ?= --precision float32 bfloat16 --quick --concurrent 2
bench: env
	$(BIN)/python -m mgmvae.bench $(BENCH_ARGS)

# The GPU check (on a machine with a CUDA GPU, under 10 minutes): the CUDA tests and a timed epoch
# of the paper setting per model -> results/gpu_check.json (bench/gpu_check.py; docs/speed.md).
gpu-check: env
	$(BIN)/python bench/gpu_check.py

# MultiVae (PyPI `multivae`, Apache-2.0) in its own venv, so it cannot move the project's torch pin.
BENCH_VENV ?= .venv-bench
bench-env: $(BENCH_VENV)/.installed
$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet torch==2.13.0
	printf 'torch==2.13.0\ntorchvision==0.28.0\n' > $(BENCH_VENV)/constraints.txt
	$(BENCH_VENV)/bin/pip install --quiet -c $(BENCH_VENV)/constraints.txt multivae
	$(BENCH_VENV)/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

clean:
	rm -rf results/quick results/ci .snakemake site
