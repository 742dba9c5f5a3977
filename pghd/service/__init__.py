"""Support shared by the two HTTP services, ingest and the care-team API.

Each piece is written once here and used by both:

- :mod:`pghd.service.producer`: the self-healing Kafka producer gateway (acknowledged
  writes within a deadline, else :class:`~pghd.service.producer.KafkaUnavailable`) and
  the ``503 kafka-unavailable`` problem that answers such a failure;
- :mod:`pghd.service.follower`: the follower of compacted topics that keeps an in-memory
  read model (ingest's enrollment book, the care-team API's alerts and care plans) up to
  date and says when it has caught up;
- :mod:`pghd.service.auth`: bearer-token authentication of care-team members and admins
  against a :class:`~pghd.access.CredentialBook`, answered with a ``401`` problem;
- :mod:`pghd.service.oidc`: the identity provider's bearer JWTs (keys fetched and cached,
  claims mapped to a :class:`~pghd.access.Principal`), checked by the same authentication;
- :mod:`pghd.service.http_metrics`: the middleware that counts answered requests (and, for
  ingest, gives each an ``X-Request-ID``);
- :mod:`pghd.service.serve`: logging set up and uvicorn run, for ``python -m <service>.main``;
- :mod:`pghd.service.aiokafka_internals`: the one place that reaches into aiokafka's
  private state, guarded by the aiokafka version it was checked against.

They build on :mod:`pghd.problems` (problem+json documents and handlers, the OpenAPI
document that says so) and :mod:`pghd.access` (roles, permissions, the users file and the
digests of credentials in the settings), which the services use too.
"""
