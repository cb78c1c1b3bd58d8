# The README's two commands: `make demo` (install + train/evaluate/render a small SIP run) and
# `make test` (install + ruff + mypy + pytest + a strict docs build). `.ci/run` calls `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export SDL_VIDEODRIVER ?= dummy
export PYTHONUNBUFFERED := 1
# mkdocs-material prints a banner about MkDocs 2.0 on every build; it is not a build warning.
export NO_MKDOCS_2_WARNING := 1

.PHONY: install demo test test-slow docs bench clean

install: $(VENV)/.installed

# torch is pinned first so that the CPU wheel on disk is used; pyproject keeps a range.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,rl,docs]"
	touch $@

demo: install
	$(PY) scripts/demo.py

test: install
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q
	$(PY) -m mkdocs build --strict --quiet --site-dir site

# The documentation site (mkdocs.yml) into site/, warnings as errors: broken links, missing
# pages and docstrings the API reference cannot render all fail the build.
docs: install
	$(PY) -m mkdocs build --strict --site-dir site

test-slow: install
	$(PY) -m pytest -q -m slow

bench: install
	$(PY) benchmarks/bench_envs.py

# sipenv vs PhiFlow and controlgym (docs/performance.md); QUICK=1 for the ≤ 10 min version.
.PHONY: bench-peers
bench-peers: install
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/bench_peers.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
