# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv first (scripts/bootstrap.sh).
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv demo test bench clean

venv:
	@scripts/bootstrap.sh

demo: venv
	@$(PY) -m nnc_tools.demo

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: venv
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info demo-run bench-results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
