# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/chicago.toml
# A night two weeks before the bundled data end (2016-08-14), replayed as of that date: training
# and the forecast see only rows before it, and the horizon's home games (known in advance,
# futr_exog) come from the rows after it. As of today every series would be stale
# (validation.max_staleness), and after 2016-08-14 no home-game schedule ships with the data.
DEMO_DATE ?= 2016-08-01
# No network here and no telemetry anywhere: keep Prefect and TensorFlow quiet and offline.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export TF_CPP_MIN_LOG_LEVEL := 3
export TF_ENABLE_ONEDNN_OPTS := 0
export PREFECT_HOME ?= $(CURDIR)/.prefect
# The embedded Prefect server gives up after 20 s by default, too short on a busy machine.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 300

.PHONY: run test lint bench bench-accuracy server clean mutation

# The stamp depends on pyproject.toml, so changing dependencies reinstalls; otherwise reuse the venv.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/forecast run --config $(CONFIG) --date $(DEMO_DATE)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The bench extra too: the test of the accuracy benchmark's NHITS runs in CI, not skipped.
test: lint $(BIN)/.installed-bench
	$(BIN)/python -m pytest

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_windowing.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_nightly.py

# Accuracy against statsforecast's baselines and NeuralForecast's NHITS (the `bench` extra: CPU
# torch, neuralforecast; its own stamp, so `make run` never installs them). Long: see the
# script's docstring. BENCH_ARGS='--quick' is a smoke run; '--panels chicago' skips M3.
BENCH_ARGS ?=
$(BIN)/.installed-bench: pyproject.toml $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

bench-accuracy: $(BIN)/.installed-bench
	$(BIN)/python benchmarks/bench_accuracy.py $(BENCH_ARGS)

# The Prefect server with its UI until Ctrl-C; SQLite under PREFECT_HOME. Once it answers, the
# automation that marks a run Crashed when its heartbeats stop (deployments/crash-zombie-flows.yaml)
# is created, unless the server has it already. Then, in another terminal, send the demo's runs
# to it (docs/production.md):
#   PREFECT_API_URL=http://127.0.0.1:4200/api make run
# Host and port go in as settings, not --host/--port: the UI takes its API address from them.
SERVER_HOST ?= 127.0.0.1
SERVER_PORT ?= 4200
ZOMBIE_AUTOMATION := crash-zombie-flow-runs
server: $(BIN)/.installed
	PREFECT_SERVER_API_HOST=$(SERVER_HOST) PREFECT_SERVER_API_PORT=$(SERVER_PORT) \
		$(BIN)/prefect server start & server=$$!; \
	trap 'kill $$server; wait $$server; exit 130' INT TERM; \
	export PREFECT_API_URL=http://$(SERVER_HOST):$(SERVER_PORT)/api; \
	$(BIN)/prefect server status --wait --timeout 300 >/dev/null \
		&& { $(BIN)/prefect automation inspect $(ZOMBIE_AUTOMATION) >/dev/null 2>&1 \
		|| $(BIN)/prefect automation create --from-file deployments/crash-zombie-flows.yaml; }; \
	wait $$server

# Mutation testing, slow and not part of CI ([tool.mutmut] in pyproject.toml): mutmut copies the
# code into mutants/, mutates it and runs the fast unit tests against each mutant, then the score
# is printed. MUTATE=lstm_model/scaling.py (files, space-separated) runs only those files' mutants;
# MUTATION_JOBS=N runs N at once (default: one per core).
MUTATE ?=
MUTATION_JOBS ?=
mutation: $(BIN)/.installed
	$(BIN)/mutmut run $(if $(MUTATION_JOBS),--max-children $(MUTATION_JOBS)) \
		$(foreach file,$(MUTATE),"$(subst /,.,$(basename $(file))).*")
	$(BIN)/python tools/mutation_score.py $(MUTATE)

clean:
	rm -rf $(VENV) .prefect build *.egg-info mutants
