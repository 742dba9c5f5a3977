"""Grafana: provisioning files (``provisioning/``) and dashboards as code (``dashboards``)."""
