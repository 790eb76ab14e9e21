# Everything runs from local venvs that these targets create; only python3 and make needed.
#
# `make test` runs ruff and mypy once (in .venv) and pytest on every CPython >= 3.11 this
# machine has (.ci/find-pythons: python3, pyenv's versions, python3.11 ... python3.15), one
# venv each: .venv for the first found, .venv-X.Y for the others. `make PYTHON=python3.14 test`
# (or PYTHON in the environment) uses that interpreter alone, for every target, in .venv-X.Y.
# With CI set and no PYTHON given, fewer than two interpreters is an error: CI checks every
# supported Python.
ifeq ($(filter command line environment,$(origin PYTHON)),)
PYTHON_GIVEN :=
INTERPRETERS := $(shell .ci/find-pythons)
else
PYTHON_GIVEN := yes
INTERPRETERS := $(shell .ci/find-pythons '$(PYTHON)')
endif
ifeq ($(INTERPRETERS),)
$(error no CPython >= 3.11 found$(if $(PYTHON_GIVEN), as PYTHON=$(PYTHON)); install one, or give PYTHON=/path/to/python3.X)
endif
.DEFAULT_GOAL := test

# INTERPRETERS holds X.Y=/path words; the first is the main one (lint, typecheck, demo, bench).
# Paths with spaces are not supported.
VERSIONS := $(foreach i,$(INTERPRETERS),$(firstword $(subst =, ,$(i))))
MAIN := $(firstword $(VERSIONS))
interpreter = $(patsubst $(1)=%,%,$(filter $(1)=%,$(INTERPRETERS)))
venv = $(if $(PYTHON_GIVEN),.venv-$(1),$(if $(filter $(MAIN),$(1)),.venv,.venv-$(1)))
VENVS := $(foreach v,$(VERSIONS),$(call venv,$(v)))
ifneq ($(and $(CI),$(filter test,$(or $(MAKECMDGOALS),$(.DEFAULT_GOAL))),$(if $(PYTHON_GIVEN),,no PYTHON)),)
ifeq ($(words $(VERSIONS)),1)
$(error CI=$(CI): make test needs at least two Pythons, found only $(INTERPRETERS); install another CPython >= 3.11, or give PYTHON=... to test one)
endif
endif

VENV := $(call venv,$(MAIN))
PY := $(VENV)/bin/python
PYPROJECT_SUM := $(shell cksum < pyproject.toml | cut -d' ' -f1)
STAMP = $(call venv,$(1))/.installed-$(PYPROJECT_SUM)
STAMPS := $(foreach v,$(VERSIONS),$(call STAMP,$(v)))

.PHONY: demo test lint typecheck bench clean

# Per interpreter: the venv (made anew unless it runs that minor version already), then the
# package and dev tools, reinstalled whenever pyproject.toml changes. pip >= 25.1 understands
# dependency groups (PEP 735); the venv's pip is upgraded first.
define venv_rules
$(call venv,$(1))/.python-$(1):
	if [ "$$$$($(call venv,$(1))/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' \
	        2>/dev/null)" != $(1) ]; then \
	    $(call interpreter,$(1)) -m venv --clear $(call venv,$(1)) && \
	    $(call venv,$(1))/bin/python -m pip install --quiet --upgrade pip; \
	fi
	touch -r $(call venv,$(1))/pyvenv.cfg $$@

$(call STAMP,$(1)): pyproject.toml $(call venv,$(1))/.python-$(1)
	$(call venv,$(1))/bin/python -m pip install --quiet -e . --group dev
	rm -f $(call venv,$(1))/.installed-* && touch $$@
endef
$(foreach v,$(VERSIONS),$(eval $(call venv_rules,$(v))))

# The simulator's outage scenario (both variants, seeded): the summary table, and the report.
DEMO_REPORT ?= outage-report.html
demo: $(VENV)/.python-$(MAIN)
	$(PY) -m pip install --quiet -e '.[sim]'
	$(PY) -m aioresilience simulate outage --seed 1 --report $(DEMO_REPORT)

lint: $(call STAMP,$(MAIN))
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(call STAMP,$(MAIN))
	$(PY) -m mypy

# pytest in each venv, one after the other (PYTEST_JOBS=2: two at a time, each run's output
# printed when it ends), then one line naming the versions it passed and failed on.
test: lint typecheck $(STAMPS)
	@.ci/pytest-each $(VENVS)

# The benchmarks under every interpreter, as make test finds them, one after the other (two at
# once would measure each other), each in its venv with the bench group; each run merges its
# numbers into benchmarks/results/X.Y.json, then benchmarks/report.py renders RESULTS.md's
# tables from those files. A failed run does not stop the others; the last line names it.
#   BENCH=guards            only that group (ratelimit, guards, keyed, redis), or parts of one:
#                           BENCH=breaker,timeout (benchmarks/run.py --help lists them)
#   BENCH_ARGS='--loop asyncio --quick'   more options for benchmarks/run.py
#   BENCH_AT=f0f61c0        the package as it was at that commit (these benchmark scripts),
#                           into benchmarks/results/f0f61c0/X.Y.json
BENCH ?=
BENCH_AT ?=
BENCH_ARGS ?=
BENCH_STAMP = $(call venv,$(1))/.bench-$(PYPROJECT_SUM)
define bench_rules
$(call BENCH_STAMP,$(1)): pyproject.toml $(call venv,$(1))/.python-$(1)
	$(call venv,$(1))/bin/python -m pip install --quiet -e . --group bench
	rm -f $(call venv,$(1))/.bench-* && touch $$@
endef
$(foreach v,$(VERSIONS),$(eval $(call bench_rules,$(v))))

bench: $(foreach v,$(VERSIONS),$(call BENCH_STAMP,$(v)))
	@failed=""; $(foreach v,$(VERSIONS),echo "make bench: Python $(v) ($(call venv,$(v)))"; \
	    $(call venv,$(v))/bin/python benchmarks/run.py $(if $(BENCH),--only $(BENCH)) \
	        $(if $(BENCH_AT),--at $(BENCH_AT)) \
	        --json benchmarks/results/$(if $(BENCH_AT),$(BENCH_AT)/)$(v).json $(BENCH_ARGS) \
	        || failed="$$failed $(v)";) \
	$(PY) benchmarks/report.py && \
	if [ -n "$$failed" ]; then echo "make bench: FAILED on Python$$failed"; exit 1; fi

clean:
	rm -rf .venv .venv-* .mypy_cache .ruff_cache .pytest_cache .hypothesis
