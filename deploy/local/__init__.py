"""Local runners for machines without Docker: real Kafka and InfluxDB under ``.local/``.

``process`` (ports, readiness, detached start, stop), ``kafka`` and ``influxdb`` (install
once, then a server object with ``start()``/``stop()``), ``topics`` (apply the topic spec),
``stack`` (``pghd dev up/down/status`` and the app-service API, state in
``.local/run/stack.json``).
"""
