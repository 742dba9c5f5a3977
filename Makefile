# pghd: the two commands of the quick start are `make run` and `make test`.
SHELL := /bin/bash
VENV := .local/venv
PY := $(VENV)/bin/python
PGHD := $(VENV)/bin/pghd
PATIENTS ?= 20
DAYS ?= 3

.PHONY: help install run stop status test unit integration lint bench clean

help:
	@echo "make run     install, start Kafka + InfluxDB + ingest/processors/alerts, feed a simulated cohort"
	@echo "make stop    stop everything 'make run' started"
	@echo "make status  what is running, on which ports"
	@echo "make test    lint + unit + integration tests (starts and stops real Kafka and InfluxDB)"
	@echo "make bench   throughput and latency figures beside same-run baselines"

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

clean:
	-$(PGHD) dev down
	rm -rf .local/data .local/logs .local/run
