# Two commands: `make run` (whole pipeline on the embedded default) and `make test`.
# Set-up is idempotent: .venv is created once (Python 3.11+), torch==2.13.0 (CPU wheel) first,
# then the project with the versions locked in constraints.txt; `make test` adds the [test] extra
# (pytest, httpx, hypothesis, openai), `make bench` the [bench] extra (TRL), neither
# needed to run the pipeline. GPUs: the [gpu] extra (README).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench
VENDOR := .vendor
TORCH_VERSION := 2.13.0
# CPU wheels, so a machine with a normal index does not pull the multi-GB CUDA build. Where that
# index is unreachable (an offline mirror), pip's configured index is used: a local CPU wheel
# where one is provided. TORCH_INDEX= (empty) always uses pip's configured index.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export GX_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: run test setup ablation compare seeds bench screenshot help

help:
	@echo "make run   - set up (once) and run the whole pipeline: dvc repro"
	@echo "make test  - set up (once) and run the test suite"
	@echo "make ablation - the default run, then queued arms: pairwise DPO and several apo.beta (SPD trained once), side by side"
	@echo "make compare - every experiment of HEAD side by side (apo.beta, teacher weights, headline metrics); EXPS=\"a b\" picks some"
	@echo "make seeds - run the default for SEEDS (1 2 3) as dvc experiments; reports/seeds.md: mean +- sd and intervals"
	@echo "make screenshot - render reports/index.html in headless Chromium to reports/index.png"
	@echo "make bench - benchmarks in bench/ (numbers go to bench/README.md)"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "apodistill needs Python 3.11 or newer, $(PYTHON) is " + sys.version.split()[0] + ": make PYTHON=/path/to/python3.11")'
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	@if [ -n "$(TORCH_INDEX)" ] && $(VENV)/bin/python -c 'import urllib.request as u; u.urlopen("$(TORCH_INDEX)/torch/", timeout=15)' 2>/dev/null; then \
	  echo "pip install torch==$(TORCH_VERSION) --index-url $(TORCH_INDEX)"; \
	  $(VENV)/bin/python -m pip install -q --index-url $(TORCH_INDEX) torch==$(TORCH_VERSION); \
	else \
	  echo "pip install torch==$(TORCH_VERSION) ($(or $(TORCH_INDEX),TORCH_INDEX unset) not reachable: pip's configured index; on a plain PyPI index, Linux x86_64 gets the CUDA build)"; \
	  $(VENV)/bin/python -m pip install -q torch==$(TORCH_VERSION); \
	fi
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e .
	@missing=""; command -v java >/dev/null || missing="$$missing default-jre-headless"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v npm >/dev/null || missing="$$missing npm"; \
	  if [ -n "$$missing" ]; then echo "installing system packages:$$missing (METEOR needs Java; Chromium renders reports; npm vendors chart assets)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) \
	    || echo "WARNING: could not install$$missing: METEOR is reported as NaN, browser checks skip, charts need the network"; fi
	$(VENV)/bin/dvc config core.analytics false
	@# Charts and Data Docs that open offline: Vega, Bootstrap & co. from npm into .vendor/, and a
	@# `dvc plots show` template with Vega inlined (.dvc/config.local: plots.html_template).
	($(VENV)/bin/python -m apodistill.offline fetch $(VENDOR) \
	  && $(VENV)/bin/python -m apodistill.offline dvc-template $(VENDOR) $(VENDOR)/dvc_plots.html \
	  && $(VENV)/bin/dvc config --local plots.html_template ../$(VENDOR)/dvc_plots.html) \
	  || echo "WARNING: chart and Data Docs assets not vendored: those pages need the network"
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(TEST_STAMP)

$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e '.[bench]'
	touch $(BENCH_STAMP)

run: $(STAMP)
	dvc repro

# Two pytest workers, one test file each at a time (the e2e file shares one smoke repository);
# conftest.py gives each worker one torch thread. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: $(TEST_STAMP)
	python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

bench: $(BENCH_STAMP)
	python bench/apo_vs_trl.py
	python bench/teachers_throughput.py
	python bench/teachers_hangs.py --json bench/teachers_hangs.json

# Ablation (docs/evaluation.md): the default run (Plackett-Luce APO, beta 0.1) is the baseline
# column; each other arm is a queued experiment run in a temp workspace one after another. They
# change only apo.* params, so SPD, self-distillation and the teacher data come from the DVC
# cache: SPD is trained once, by the `dvc repro`, for every arm. The MLflow runs of every arm
# land in this repository's store; `apodistill store` counts them before and after.
ABLATION_BETAS ?= 0.05 0.2 0.5
ABLATION_EXPS := abl-pairwise $(foreach b,$(ABLATION_BETAS),abl-pl-beta-$(subst .,p,$(b)))

ablation: $(STAMP)
	dvc repro
	apodistill store
	-dvc exp remove $(ABLATION_EXPS) >/dev/null 2>&1
	dvc exp run --queue -n abl-pairwise -S apo.loss=pairwise -S apo.beta=0.1
	$(foreach b,$(ABLATION_BETAS),dvc exp run --queue -n abl-pl-beta-$(subst .,p,$(b)) -S apo.loss=plackett_luce -S apo.beta=$(b) &&) true
	dvc exp run --run-all --jobs 1
	apodistill store
	apodistill compare $(ABLATION_EXPS)

compare: $(STAMP)
	apodistill compare $(EXPS)

screenshot: $(STAMP)
	python -m apodistill.reporting.screenshot reports/index.html reports/index.png

# Seeds: the whole default again per seed (benchmark, teachers, students all follow base.seed), as
# queued dvc experiments side by side in `dvc exp show`, then one table (reports/seeds.md).
SEEDS ?= 1 2 3
seeds: $(STAMP)
	-dvc exp remove $(foreach s,$(SEEDS),seed-$(s)) >/dev/null 2>&1
	$(foreach s,$(SEEDS),dvc exp run --queue -n seed-$(s) -S base.seed=$(s) &&) true
	dvc exp run --run-all --jobs 1
	python -m apodistill.reporting.seeds --out reports/seeds $(foreach s,$(SEEDS),seed-$(s))
