# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv first (scripts/bootstrap.sh).
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv demo test lint bench clean networks

venv:
	@scripts/bootstrap.sh

demo: venv
	@$(PY) -m nnc_tools.cli.demo demo-run

test: venv
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	$(PY) -m compileall -q nnc_tools >/dev/null  # start-up is measured: bytecode current, as after the bootstrap
	$(PY) -m benchmarks

# Regenerate the network zoo's projects (tests fail when networks/ differs from what export writes).
networks: venv
	for n in $$($(VENV)/bin/nnc-tl networks | cut -d' ' -f1); do $(VENV)/bin/nnc-tl export $$n -o networks/$$n.nntxt; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info demo-run bench-results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
