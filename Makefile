# The README's two set-up commands: `make demo` and `make test`. Each makes .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.p2pft-installed

.PHONY: test demo venv lint proto bench chaos gpu-wheels clean

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
# `make test` covers more cheaply (each says where): minutes each, so not part of `make test`. Then the seeded
# chaos campaign (bench/chaos_campaign.py, docs/reliability.md): jobs on real daemons hit by random faults, ~45 min;
# it writes bench/results/chaos_campaign.json and its section of docs/reliability.md.
CHAOS_ARGS ?= --seed 1 --jobs 12 --faults-per-job 10 --budget-min 45
chaos: $(STAMP)
	$(BIN)/python -m pytest -q -m chaos
	nice -n 19 $(BIN)/python bench/chaos_campaign.py $(CHAOS_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# For a lent GPU machine (Python 3.12, CUDA torch, no network): the wheels its image lacks for `p2pft run`,
# carried in .whl (git-ignored). docs/benchmarks.md "GPU checks" has the command to run there.
GPU_WHEELS := pydantic==2.14.4 pydantic_core==2.50.5 annotated_types==0.8.0 typing_inspection==0.4.5
gpu-wheels: $(STAMP)
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $(GPU_WHEELS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
