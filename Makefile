# Two commands: `make run` (whole pipeline on the embedded default) and `make test`.
# Set-up is idempotent: .venv is created once, torch==2.13.0 (CPU wheel) first, then the
# project with the versions locked in constraints.txt; `make test` adds the [test] extra
# (pytest, httpx, hypothesis, openai), `make bench` the [bench] extra (TRL), neither
# needed to run the pipeline.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export GX_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: run test setup ablation bench screenshot help

help:
	@echo "make run   - set up (once) and run the whole pipeline: dvc repro"
	@echo "make test  - set up (once) and run the test suite"
	@echo "make ablation - queue and run SPD+APO (Plackett-Luce), pairwise DPO and several apo.beta, then compare"
	@echo "make screenshot - render reports/index.html in headless Chromium to reports/index.png"
	@echo "make bench - benchmarks in bench/ (numbers go to bench/README.md)"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e .
	@missing=""; command -v java >/dev/null || missing="$$missing default-jre-headless"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  if [ -n "$$missing" ]; then echo "installing system packages:$$missing (METEOR needs Java; Chromium renders reports)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) \
	    || echo "WARNING: could not install$$missing: METEOR is reported as NaN and browser checks skip"; fi
	$(VENV)/bin/dvc config core.analytics false
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(TEST_STAMP)

$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e '.[bench]'
	touch $(BENCH_STAMP)

run: $(STAMP)
	dvc repro

test: $(TEST_STAMP)
	python -m pytest -q

bench: $(BENCH_STAMP)
	python bench/apo_vs_trl.py
	python bench/teachers_throughput.py
	python bench/teachers_hangs.py --json bench/teachers_hangs.json

# Ablation (docs/evaluation.md): one queued experiment per arm, run one after another, then side by side.
# "SPD only" is the spd.* columns of every row: the spd stage reads no apo.* param, so all rows share one SPD model.
ABLATION_BETAS ?= 0.05 0.2 0.5
ABLATION_KEEP ?= ^(Experiment|(.*:)?(apo\.loss|apo\.beta|(spd|apo|best_teacher|majority_vote)\.(pair_acc|acc)\.mean|apo\.vs_(spd|best_teacher)\.(pair_acc|acc)\.(diff|ci_low|ci_high)))$$

ablation: $(STAMP)
	-dvc exp remove abl-apo-pl abl-pairwise $(foreach b,$(ABLATION_BETAS),abl-pl-beta-$(subst .,p,$(b))) >/dev/null 2>&1
	dvc exp run --queue -n abl-apo-pl -S apo.loss=plackett_luce -S apo.beta=0.1
	dvc exp run --queue -n abl-pairwise -S apo.loss=pairwise -S apo.beta=0.1
	$(foreach b,$(ABLATION_BETAS),dvc exp run --queue -n abl-pl-beta-$(subst .,p,$(b)) -S apo.loss=plackett_luce -S apo.beta=$(b) &&) true
	dvc exp run --run-all --jobs 1
	dvc exp show --no-pager --md --drop '.*' --keep '$(ABLATION_KEEP)'

screenshot: $(STAMP)
	python -m apodistill.reporting.screenshot reports/index.html reports/index.png
