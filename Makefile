# The README's two set-up commands: `make demo` and `make test`. Each makes .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.p2pft-installed

.PHONY: test demo venv lint proto bench chaos clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/p2pft demo

proto: $(STAMP)
	$(BIN)/python -m p2pft.rpc.codegen

# Long fault campaigns (partitions of every shape, a restart) and the long end-to-end scenarios whose paths
# `make test` covers more cheaply (each says where): minutes each, so not part of `make test`.
chaos: $(STAMP)
	$(BIN)/python -m pytest -q -m chaos

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
