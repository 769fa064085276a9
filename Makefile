# The two commands of README: `make demo` runs the pipeline, `make test` the tests.
# Both first create or update the project's virtual environment in .venv; a second run
# installs nothing (the stamp file is newer than pyproject.toml and constraints.txt).

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
RUN := PATH="$(BIN):$$PATH"

.PHONY: demo test test-fast lint bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(RUN) dvc repro

test: $(STAMP)
	$(RUN) pytest

test-fast: $(STAMP)
	$(RUN) pytest -m "not slow"

lint: $(STAMP)
	$(RUN) ruff check pipeline stages tests benchmarks

bench: $(STAMP)
	$(RUN) python benchmarks/rle_speed.py
	$(RUN) python benchmarks/validate_throughput.py
	$(RUN) python benchmarks/data_loading.py
	$(RUN) python benchmarks/train_throughput.py --arch maskrcnn_resnet18_fpn --size 256 --batch 4
	$(RUN) python benchmarks/inference_throughput.py --arch maskrcnn_resnet18_fpn --min-size 192 --max-size 256
