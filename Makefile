# Two commands set everything up on a fresh machine:  make demo  and  make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast docs browser clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

## demo: train every *_digits config on the embedded digits, benchmark them, build the leaderboard
demo: $(STAMP)
	$(PY) -m lightning_gen demo

## test: the whole suite, DDP and training runs included (CI runs this)
test: $(STAMP) browser
	$(PY) -m pytest

## test-fast: skip the runs marked slow and the Chromium tests marked browser (no browser needed)
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not browser"

## docs: the manual (docs/, MkDocs + Material) into site/; --strict fails on a broken link or a missing image
docs: $(STAMP)
	$(PY) -m mkdocs build --strict

## browser: headless Chromium for the dashboard's browser test (Debian package, no browser download)
browser:
	bash scripts/install_browser.sh

clean:
	rm -rf runs results site .pytest_cache
