"""Placeholder: being written."""


def simulate() -> None:
    """Post a simulated cohort to the ingest API."""
    raise NotImplementedError
