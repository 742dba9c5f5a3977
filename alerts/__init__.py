"""Alerts service: anomalies from Kafka to care-team notifications (Apprise)."""
