"""The store stage: judged points from ``pghd.points.v1`` into InfluxDB.

Judging never waits on InfluxDB. The processors agent publishes the points of each batch
(one record per patient per batch, :mod:`processors.store.records`) to ``pghd.points.v1``
and goes on; this stage reads that topic in its own consumer group, writes the points to
InfluxDB and commits its offsets only once InfluxDB accepted them (or the points it refused
for good are in the DLQ). While InfluxDB is down or hung, the topic is the durable
catch-up buffer: judging and anomalies go on, and the stored points catch up when it
returns (re-writing a point is harmless: one value per series, field and time).

Modules: :mod:`~processors.store.records` (the wire format), :mod:`~processors.store.
outcome` (which errors are transient, which are the point's fault),
:mod:`~processors.store.isolate` (write a batch, setting aside the points InfluxDB refuses),
:mod:`~processors.store.stage` (the consumer loop), :mod:`~processors.store.main`
(``python -m processors.store.main`` runs the stage alone).
"""
