# The two commands of README: `make demo` runs the pipeline, `make test` the tests.
# Both first create or update the project's virtual environment in .venv; a second run
# installs nothing (the stamp file is newer than pyproject.toml and constraints.txt).

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
RUN := PATH="$(BIN):$$PATH"

WHEELHOUSE := build/wheelhouse/py$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')

.PHONY: demo compare scale test test-fast lint bench kaggle-kernel dvc-deps browser

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,serve,export]'
	touch $(STAMP)

demo: $(STAMP)
	$(RUN) dvc repro

# Every family of compare/params.yaml on a larger synthetic set, in build/compare (docs/models.md).
compare: $(STAMP)
	$(RUN) python compare/workspace.py

# Every stage on the real profile of the synthetic data at 1, 3 and 10 % of the real training set, in build/scale:
# time, memory and disk per stage, their growth, and the verdicts for a Kaggle session (docs/benchmarks.md).
scale: $(STAMP)
	$(RUN) python benchmarks/scale.py

# The Kaggle kernel tests install the bundle offline: its dependency wheels are fetched here, in set-up.
$(WHEELHOUSE)/.complete: $(STAMP)
	$(RUN) python -m kaggle_kernel.build --wheelhouse-only

# Lint first (style and the declared layering of pyproject.toml), then every test. The slowest tests
# are listed at the end of the output; the bundle tests may not skip for want of wheels.
test: lint $(WHEELHOUSE)/.complete browser
	$(RUN) IMATERIALIST_REQUIRE_WHEELHOUSE=1 pytest --durations=15

test-fast: lint $(WHEELHOUSE)/.complete browser
	$(RUN) IMATERIALIST_REQUIRE_WHEELHOUSE=1 pytest -m "not slow" --durations=15

# The web page's browser test drives Debian's Chromium: installed here when missing and this runs as root with
# apt-get; otherwise the test skips and says why (tests/browser.py).
browser:
	@if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver >/dev/null) || echo "could not install Chromium: the browser test will skip"; \
	else echo "no Chromium and no root apt-get to install it: the browser test will skip"; fi

lint: $(STAMP)
	$(RUN) ruff check pipeline stages tests benchmarks kaggle_kernel compare tools
	$(RUN) lint-imports

# dvc.yaml's code dependencies, written from the modules each stage imports (a test fails while they are stale).
dvc-deps: $(STAMP)
	$(RUN) python tools/dvc_deps.py

bench: $(STAMP)
	$(RUN) python benchmarks/rle_speed.py
	$(RUN) python benchmarks/validate_throughput.py
	$(RUN) python benchmarks/data_loading.py
	$(RUN) python benchmarks/train_throughput.py --arch maskrcnn_resnet18_fpn --size 256 --batch 4
	$(RUN) python benchmarks/inference_throughput.py --arch maskrcnn_resnet18_fpn --min-size 192 --max-size 256
	$(RUN) python benchmarks/family_throughput.py

# The push-ready Kaggle notebook (docs/kaggle.md): build/kaggle/kernel and build/kaggle/dataset.
# Options: OWNER=<kaggle username> INTERNET=1 (an online notebook) RESUME=1 (continue the last version).
kaggle-kernel: $(STAMP)
	$(RUN) python -m kaggle_kernel.build $(if $(OWNER),--owner $(OWNER)) $(if $(INTERNET),--internet) $(if $(RESUME),--resume)
