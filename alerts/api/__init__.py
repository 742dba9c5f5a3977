"""Care-team API: list alerts and act on them (acknowledge, resolve, silence) over HTTP.

A separate process from the alerts worker, with its own credentials (bearer tokens of care
team members, never the device sources' API keys). It reads alert state from the compacted
``pghd.alerts.v1`` topic and writes :class:`pghd.alert_commands.AlertCommand` records to
``pghd.alert-commands.v1``, which the worker applies. Run it with ``python -m alerts.api.main``.
"""
