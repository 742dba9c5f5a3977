"""Signed vendor webhooks: signature schemes, the replay guard and per-source configuration.

``signing`` verifies the three signature schemes ingest accepts (pghd's own
``X-Pghd-Signature``, Terra's ``terra-signature`` and Svix's, which Junction uses) and keeps
the replay guard; ``config`` describes one configured webhook source. The route is
``ingest/api/routes/webhooks.py``; the vendor payload adapters are under ``ingest/adapters``.
"""
