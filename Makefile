# Everything runs from a local .venv that these targets create; only python3 and make needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint typecheck bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# pip >= 25.1 understands dependency groups (PEP 735); the venv's pip is upgraded above.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e . --group dev
	rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: | $(PY)
	$(PY) -m pip install --quiet -e .
	$(PY) examples/demo.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

test: lint typecheck
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m pip install --quiet -e . --group bench
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
