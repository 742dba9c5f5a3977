"""Stream processors: dedup, per-patient baselines, detectors and the InfluxDB sink.

``processors.app`` holds the Faust app; ``python -m processors.main`` runs a worker.
"""
