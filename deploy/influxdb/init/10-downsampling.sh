#!/bin/bash
# Run once by the influxdb:2.x image after its first-start setup (mounted into
# /docker-entrypoint-initdb.d by docker-compose.yml): creates the bucket of the hourly and
# daily aggregates and the Flux tasks that fill it (deploy/influxdb/tasks/*.flux).
# The raw bucket "pghd" and its retention come from DOCKER_INFLUXDB_INIT_*.
set -euo pipefail

org="${DOCKER_INFLUXDB_INIT_ORG}"
retention="${PGHD_DOWNSAMPLED_RETENTION:-1825d}"

influx bucket create --org "$org" --name pghd_downsampled --retention "$retention"
for task in /etc/pghd/influxdb/tasks/*.flux; do
    influx task create --org "$org" --file "$task"
done
