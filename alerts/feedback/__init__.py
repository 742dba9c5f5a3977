"""Feedback to patients' apps, sent by the alerts worker (see :mod:`alerts.feedback.worker`).

Pure: :mod:`~alerts.feedback.findings` and :mod:`~alerts.feedback.refusals` (events from alert
transitions and ingest's dead letters), :mod:`~alerts.feedback.silence` and
:mod:`~alerts.feedback.weekly` (from the judged readings), :mod:`~alerts.feedback.outbox`
(what is sent, retried, dropped), :mod:`~alerts.feedback.ratelimit`,
:mod:`~alerts.feedback.book` (the subscriptions). I/O: :mod:`~alerts.feedback.sender` (the
signed POST) and :mod:`~alerts.feedback.worker` (the Faust agents, table and timer).
"""
