// Downsampling of the raw vitals into bucket "pghd_downsampled": hourly mean/min/max/count per
// patient, metric, channel and unit (sources merged), one point per window at its start.
// The same pipeline as `pghd influx downsample` (pghd/commands/influx.py, aggregate_query);
// created by deploy/influxdb/init/10-downsampling.sh. The range covers the last two windows,
// so a reading that arrived late still lands in its window (rewriting a point is harmless).
option task = {name: "pghd-vitals-hourly", every: 1h, offset: 5m}

data = from(bucket: "pghd")
  |> range(start: -2h)
  |> filter(fn: (r) => r._measurement == "vitals" and r._field == "value")
  |> group(columns: ["patient_id", "metric", "channel", "unit"])

downsample = (fn, field) => data
  |> aggregateWindow(every: 1h, fn: fn, createEmpty: false, timeSrc: "_start")
  // Selectors (min, max) keep the row they picked, source and device tags included: keep
  // only the series columns so that every aggregate of a window lands in one series.
  |> keep(columns: ["_time", "_value", "patient_id", "metric", "channel", "unit"])
  |> set(key: "_measurement", value: "vitals_1h")
  |> set(key: "_field", value: field)
  |> to(bucket: "pghd_downsampled", org: "pghd")

downsample(fn: mean, field: "mean")
downsample(fn: min, field: "min")
downsample(fn: max, field: "max")
downsample(fn: count, field: "count")
