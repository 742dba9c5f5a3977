# One image for the four services and the pghd command line; the compose file picks the
# command. Python 3.11 to match pyproject.toml.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pghd ./pghd
COPY ingest ./ingest
COPY processors ./processors
COPY alerts ./alerts
COPY deploy ./deploy
RUN pip install --no-cache-dir ".[rocksdb]" \
    && useradd --system --uid 10001 pghd && mkdir -p /data /run/pghd-grafana \
    && chown pghd /data /run/pghd-grafana
USER pghd
EXPOSE 8000 8001 6066 6067
CMD ["pghd", "--help"]
