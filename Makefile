# The documented commands: `make run` (one ingestion cycle) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__PARALLELISM ?= 4
export PYTHONPATH := $(CURDIR)
export DO_NOT_TRACK := 1
export UNSTRUCTURED_DISABLE_NOTICE := 1

.PHONY: install run reindex migrate scheduler scheduler-stack metadata-db test test-deps test-fast replay lint bench bench-peer clean

install: $(VENV)/.installed

# torch first and alone: the CPU build on this disk, so nothing later pulls a CUDA build.
$(VENV)/.installed: requirements.txt constraints.txt providers/milvus/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

# Every write_batch takes a slot of this pool (1 for Milvus Lite); an existing pool keeps its slots.
ENSURE_WRITER_POOL = $(BIN)/airflow pools get milvus_writer > /dev/null 2>&1 \
	|| $(BIN)/airflow pools set milvus_writer 1 "hn_ingest writes to Milvus (1 for Milvus Lite)" > /dev/null

$(AIRFLOW_HOME)/airflow.db: $(VENV)/.installed
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/db-migrate.log; exit 1)
	$(ENSURE_WRITER_POOL)

## One ingestion cycle into Milvus Lite (data/milvus.db), then what is stored.
## REPLAY=30 runs it against a local replay of 30 corpus stories instead of the live Hacker News.
run: $(AIRFLOW_HOME)/airflow.db
	$(if $(REPLAY),$(BIN)/python -m tests.replay_server --stories $(REPLAY) --) $(BIN)/airflow dags test hn_ingest $(if $(CONF),-c '$(CONF)') > $(AIRFLOW_HOME)/last-run.log 2>&1 \
		|| (tail -n 40 $(AIRFLOW_HOME)/last-run.log; echo "hn_ingest failed: full log in $(AIRFLOW_HOME)/last-run.log"; exit 1)
	grep -h "run summary\|: failed\|run: " $(AIRFLOW_HOME)/last-run.log | sed 's/^.*\] //' || true
	$(BIN)/python -m include.ops.status

## A reindex without a scheduler: a run of hn_ingest begins it (CONF='{"conditional": false}' re-downloads
## every page), then runs of hn_reindex take its slices until it is done (`make scheduler` does this alone).
reindex: $(AIRFLOW_HOME)/airflow.db
	conf=$$($(BIN)/python -c "import json, sys; print(json.dumps({**json.loads(sys.argv[1]), 'reindex': True}))" \
		'$(or $(CONF),{})') && $(MAKE) --no-print-directory run CONF="$$conf"
	while $(BIN)/python -m include.ops.status --json | $(BIN)/python -c \
			"import json, sys; r = json.load(sys.stdin)['reindex']; sys.exit(0 if r and r['state'] == 'running' else 1)"; do \
		$(BIN)/airflow dags test hn_reindex > $(AIRFLOW_HOME)/last-reindex-run.log 2>&1 \
			|| (tail -n 40 $(AIRFLOW_HOME)/last-reindex-run.log; echo "hn_reindex failed: full log in $(AIRFLOW_HOME)/last-reindex-run.log"; exit 1); \
		grep -h "reindex: " $(AIRFLOW_HOME)/last-reindex-run.log | sed 's/^.*\] //' || true; \
	done
	$(BIN)/python -m include.ops.status

## The store at this release's schema (the pipeline's first task does the same; readers never migrate).
migrate: $(VENV)/.installed
	$(BIN)/python -m include.ops.migrate

## The metadata DB of `make scheduler`: Postgres, which backfills need while the scheduler runs (SQLite
## refuses them under concurrent access). $AIRFLOW__DATABASE__SQL_ALCHEMY_CONN when set; otherwise the
## database hn_ingest_airflow on this machine's Postgres (Debian's postgresql, installed and started when
## missing: needs root), with a password made once and kept owner-only in $(AIRFLOW_HOME)/metadata-db.url.
METADATA_DB_URL := $(AIRFLOW_HOME)/metadata-db.url
METADATA_DB = $${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-$$(cat $(METADATA_DB_URL))}

metadata-db: $(VENV)/.installed
	@mkdir -p $(AIRFLOW_HOME)
	@if [ -z "$$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" ]; then \
		dpkg -s postgresql > /dev/null 2>&1 || { echo "installing Debian's postgresql"; \
			export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q postgresql > /dev/null \
			|| (apt-get update -q > /dev/null && apt-get install -y -q postgresql > /dev/null); }; \
		pg_lsclusters -h | grep -q online || service postgresql start > /dev/null; \
		if [ ! -s $(METADATA_DB_URL) ]; then \
			password=$$($(BIN)/python -c "import secrets; print(secrets.token_hex(24))"); \
			su postgres -c "psql -qc \"CREATE ROLE hn_ingest LOGIN PASSWORD '$$password'\"" > /dev/null 2>&1 \
				|| su postgres -c "psql -qc \"ALTER ROLE hn_ingest PASSWORD '$$password'\"" > /dev/null; \
			su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname = 'hn_ingest_airflow'\"" | grep -q 1 \
				|| su postgres -c "createdb -O hn_ingest hn_ingest_airflow"; \
			(umask 077; echo "postgresql+psycopg2://hn_ingest:$$password@127.0.0.1:5432/hn_ingest_airflow" > $(METADATA_DB_URL)); \
		fi; \
	fi
	AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$(METADATA_DB) $(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 \
		|| (cat $(AIRFLOW_HOME)/db-migrate.log; exit 1)
	@export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$(METADATA_DB); $(ENSURE_WRITER_POOL)

## The real scheduler path, on the Postgres metadata DB above: api-server (UI on 127.0.0.1:8080; HOST=0.0.0.0 to expose it), then, once it
## answers, scheduler (LocalExecutor), dag-processor, triggerer, and the daily metadata DB cleanup
## (include/ops/metadata_cleanup.py). The JWT secret is made once per
## Airflow home. hn_ingest then runs every 15 s; Ctrl-C stops them all.
## REPLAY=30 runs it against a local replay of 30 corpus stories instead of the live Hacker News.
scheduler: metadata-db
	$(if $(REPLAY),$(BIN)/python -m tests.replay_server --stories $(REPLAY) --) $(MAKE) --no-print-directory scheduler-stack

scheduler-stack: metadata-db
	test -s $(AIRFLOW_HOME)/jwt-secret || (umask 077; $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(48))" > $(AIRFLOW_HOME)/jwt-secret)
	export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$(METADATA_DB) AIRFLOW__CORE__EXECUTOR=LocalExecutor \
		AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(or $(PORT),8080)/execution/ \
		AIRFLOW__API_AUTH__JWT_SECRET=$${AIRFLOW__API_AUTH__JWT_SECRET:-$$(cat $(AIRFLOW_HOME)/jwt-secret)} \
		AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False \
		AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL=$${AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL:-30} \
		AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=$${AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME:-0.25}; \
	trap 'kill 0' EXIT; \
	$(BIN)/airflow api-server --host $(or $(HOST),127.0.0.1) --port $(or $(PORT),8080) & \
	for i in $$(seq 120); do curl -sf http://127.0.0.1:$(or $(PORT),8080)/api/v2/monitor/health > /dev/null && break; sleep 1; done; \
	echo "UI: http://127.0.0.1:$(or $(PORT),8080) (user admin, password in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated)"; \
	$(BIN)/airflow scheduler & \
	$(BIN)/airflow dag-processor & \
	$(BIN)/airflow triggerer & \
	$(BIN)/python -m include.ops.metadata_cleanup --every 86400 & \
	wait

## Servers the tests run for real: Postgres and Redis (CeleryExecutor), docker-compose (checks the
## compose file), chromium (the UI test's browser), and a Milvus 2.3.5 standalone server in its own
## venv. Installed before the suite enters its offline namespace.
DEBIAN_PACKAGES := postgresql redis-server docker-compose chromium
MILVUS_VENV := $(CURDIR)/.milvus-venv

test-deps: $(VENV)/.installed $(MILVUS_VENV)/.installed
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends $$missing > /dev/null \
			|| (apt-get update -q > /dev/null && apt-get install -y -q --no-install-recommends $$missing > /dev/null); \
	fi

$(MILVUS_VENV)/.installed: $(VENV)/.installed tests/milvus_server.py
	$(BIN)/python -c "from tests.milvus_server import milvus_server_python; milvus_server_python()"
	touch $@

## The whole suite, in a loopback-only network namespace when possible (root), with the tripwire always.
test: test-deps
	tests/run_offline.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.installed
	tests/run_offline.sh $(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

## A local replay of HN over the corpus, for `make run` without internet (see README).
replay: $(VENV)/.installed
	$(BIN)/python -m tests.replay_server --stories $(or $(STORIES),30)

## Benchmarks (docs/benchmarks.md): each prints a table with its goals and saves it under bench/results/.
## Bulk ingest cold and warm, text and retrieval quality, freshness and idle runs on the real scheduler.
bench: $(VENV)/.installed
	tests/run_offline.sh $(BIN)/python -m bench.bulk_ingest $(BENCH_ARGS)
	tests/run_offline.sh $(BIN)/python -m bench.quality
	tests/run_offline.sh $(BIN)/python -m bench.retrieval
	tests/run_offline.sh $(BIN)/python -m bench.api
	tests/run_offline.sh $(BIN)/python -m bench.threads
	tests/run_offline.sh $(BIN)/python -m bench.freshness
	tests/run_offline.sh $(BIN)/python -m bench.run_hygiene
	tests/run_offline.sh $(BIN)/python -m bench.politeness

## The peer side by side (unstructured-ingest, installed into bench/.peer-venv first, with network).
bench-peer: $(VENV)/.installed
	$(BIN)/python -c "from bench.peer import peer_python; peer_python()"
	tests/run_offline.sh $(BIN)/python -m bench.peer

lint: $(VENV)/.installed
	$(BIN)/ruff check dags plugins include tests bench providers

clean:
	rm -rf .airflow data .pytest_cache
