"""The ingest HTTP service: authenticate vendors, validate readings, produce them to Kafka."""
