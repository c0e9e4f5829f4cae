# `make demo` and `make test` work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_DIR := outputs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: help install demo test bench device-check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(INSTALLED) ## create .venv and install segtrain (editable) with its dependencies

demo: $(INSTALLED) ## train the default run (FCN-8s on the synthetic scenes), then evaluate its best checkpoint
	$(BIN)/segtrain hydra.run.dir=$(DEMO_DIR)
	$(BIN)/segtrain-eval ckpt=$(DEMO_DIR)/checkpoints/best.pt

test: $(INSTALLED) ## run the test suite (CPU, a few minutes; one pytest worker per core, idle ones take queued tests)
	$(BIN)/python -m pytest -q -n auto --dist worksteal

bench: $(INSTALLED) ## trainer throughput against a bare PyTorch loop (scripts/bench_train.py)
	$(BIN)/python scripts/bench_train.py

# the venv's Python where there is one; on a GPU machine without it, python3 with the .whl/ packages
CHECK_PYTHON := $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))

device-check: ## every GPU figure in one run under 8 minutes: OUT=folder [DRY=1: on the CPU at toy sizes]
	$(if $(OUT),,$(error make device-check needs OUT=folder for device_check.md, .json and .log))
	$(CHECK_PYTHON) scripts/device_check.py $(if $(DRY),--dry-run) $(OUT)

clean: ## remove build files (keeps .venv and outputs/)
	rm -rf build dist *.egg-info .pytest_cache
