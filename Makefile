# Every target builds .venv from nothing when it is missing and reuses it otherwise.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast bench reproduce clean-venv

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	# DeepSpeed is an sdist whose setup imports torch: build it against the torch just installed
	# (no JIT ops; the CPU tests only build strategies, configs and checkpoints)
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet --no-build-isolation -c constraints.txt deepspeed
	@touch $(STAMP)

## The main job: the information-imbalance sweep (k = 0..5) at CPU size, one seed.
demo: $(STAMP)
	WANDB_MODE=$${WANDB_MODE:-offline} $(VENV)/bin/infogap ablate imbalance --seeds 0 --out results --jobs 2

# pytest workers; a test file stays on one worker (module fixtures such as the SLURM cluster start once),
# files handed out in the order tests/conftest.py gives (most slow tests first, not xdist's most tests
# first); the 25 slowest tests are listed at the end, to watch the suite's time
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

## The whole test suite, slow end-to-end tests included.
test: $(STAMP)
	$(PYTEST)

## Everything but the slow end-to-end tests.
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

## Every study of a plan in one command and one report: make reproduce SIZE=smoke|cpu|gpu (JOBS=2)
SIZE ?= smoke
JOBS ?= 2
reproduce: $(STAMP)
	WANDB_MODE=$${WANDB_MODE:-offline} $(VENV)/bin/infogap reproduce --size $(SIZE) --jobs $(JOBS)

## Throughput and memory benchmarks; results go to BENCHMARKS.md by hand with the machine.
bench: $(STAMP)
	$(PY) benchmarks/run.py

clean-venv:
	rm -rf $(VENV)
