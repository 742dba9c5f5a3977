#!/usr/bin/env bash
# Run the test suite with the wall clock of every Python process set to a UTC hour of the day.
#
#   scripts/test-at-hour.sh HH:MM [pytest arguments]     (default: tests -q -p no:cacheprovider)
#
# libfaketime (LD_PRELOAD) shifts the wall clock of pytest and of every process it starts
# (ingest, processors, alerts, the pghd commands) by one fixed offset, so the suite starts at
# HH:MM UTC and the clock runs on normally from there (crossing the hour, or midnight, as a
# real run would). The monotonic clock is left alone: timeouts and waits stay real.
#
# The servers keep the real clock, as a server elsewhere would: influxd is a static Go binary
# (LD_PRELOAD does not reach it), and Kafka's JVM is left out on purpose (FAKETIME_SKIP_CMDS):
# under libfaketime its time calls slow the broker until it times out while starting. Since
# InfluxDB's "now" is real, and queries like ``range(start: -30d)`` end at that "now", the
# simulated time is the latest HH:MM UTC that has already passed (0 to 24 h ago): points
# stamped by the faked clock are never in InfluxDB's future.
#
# The libfaketime library: $PGHD_LIBFAKETIME if set, else the one built into the PyPI package
# ``libfaketime`` (installed once into .local/libfaketime). Debian's libfaketime 0.9.10
# (package ``faketime``) does not work here: with the monotonic clock left alone, its
# clock_nanosleep makes Python 3.11's time.sleep fail with EINVAL; faking the monotonic clock
# too hangs threading waits.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.local/venv"

usage() {
  echo "usage: $0 HH:MM [pytest arguments]   (UTC, e.g. 01:25 or 23:55)" >&2
  exit 2
}
[ $# -ge 1 ] || usage
hhmm="$1"
shift
[[ "$hhmm" =~ ^([01][0-9]|2[0-3]):[0-5][0-9]$ ]] || usage

bash "$here/scripts/bootstrap.sh"

lib="${PGHD_LIBFAKETIME:-}"
if [ -z "$lib" ]; then
  version="3.0.1"
  target="$here/.local/libfaketime/$version"
  lib="$target/libfaketime/vendor/libfaketime/src/libfaketime.so.1"
  if [ ! -f "$lib" ]; then
    echo "==> installing libfaketime $version (PyPI package libfaketime) into .local/libfaketime"
    "$venv/bin/python" -m pip install -q --no-deps --target "$target" "libfaketime==$version"
  fi
fi
[ -f "$lib" ] || { echo "no libfaketime library at $lib" >&2; exit 1; }

now="$(date -u +%s)"
at="$(date -u -d "today $hhmm" +%s)"
if [ "$at" -gt "$now" ]; then
  at="$(date -u -d "yesterday $hhmm" +%s)"
fi
offset=$((at - now))

export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}"
export FAKETIME="$offset"
export FAKETIME_DONT_FAKE_MONOTONIC=1
export FAKETIME_SKIP_CMDS="java"

started="$("$venv/bin/python" -c 'from datetime import UTC, datetime; print(datetime.now(UTC).isoformat(timespec="seconds"))')"
case "$started" in
  *"T$hhmm:"*) ;;
  *)
    echo "libfaketime did not take: the clock says $started, not $hhmm" >&2
    exit 1
    ;;
esac
echo "==> clock of the Python processes: $started (real: $(date -u -d "@$now" +%FT%T), offset ${offset} s)"

if [ $# -eq 0 ]; then
  set -- tests -q -p no:cacheprovider
fi
cd "$here"
exec "$venv/bin/pytest" "$@"
