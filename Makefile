# pghd: the two commands of the quick start are `make run` and `make test`.
SHELL := /bin/bash
VENV := .local/venv
PY := $(VENV)/bin/python
PGHD := $(VENV)/bin/pghd
PATIENTS ?= 20
DAYS ?= 3

.PHONY: help install run stop status test unit integration lint bench soak fuzz influxdb2 clean

help:
	@echo "make run     install, start Kafka + InfluxDB + ingest/processors/alerts/care-team API, feed a simulated cohort"
	@echo "make stop    stop everything 'make run' started"
	@echo "make status  what is running, on which ports"
	@echo "make test    lint + unit + integration tests (starts and stops real Kafka and InfluxDB)"
	@echo "make bench   throughput and latency figures beside same-run baselines"
	@echo "make soak    30 min steady stream with faults injected; counts accepted = stored (SOAK_MINUTES)"
	@echo "make fuzz    schemathesis against every ingest operation, 15 min budget (FUZZ_BUDGET_S)"

install:
	@bash scripts/bootstrap.sh

run: install
	@bash scripts/run.sh $(PATIENTS) $(DAYS)

stop: install
	@$(PGHD) dev down

status: install
	@$(PGHD) dev status

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy pghd ingest processors alerts deploy bench

unit: install
	$(VENV)/bin/pytest tests/unit -q

integration: install
	$(VENV)/bin/pytest tests/integration -q

test: install lint
	$(VENV)/bin/pytest tests -q -p no:cacheprovider

bench: install
	$(PY) -m bench

# InfluxDB 2.7 (the version docker-compose ships) built from the Go module proxy and crates.io
# into .local/influxdb2 (~10 min and 2.9 GiB of caches the first time).
influxdb2:
	@bash scripts/build-influxd2.sh .local/influxdb2

SOAK_MINUTES ?= 30
soak: install
	$(PY) -m bench.soak --minutes $(SOAK_MINUTES)

FUZZ_BUDGET_S ?= 900
FUZZ_MAX_EXAMPLES ?= 1000
fuzz: install
	PGHD_FUZZ_BUDGET_S=$(FUZZ_BUDGET_S) PGHD_FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) \
		$(VENV)/bin/pytest tests/integration/test_api_fuzz.py -q -p no:cacheprovider

clean:
	-$(PGHD) dev down
	rm -rf .local/data .local/logs .local/run
