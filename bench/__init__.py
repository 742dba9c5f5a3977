"""``make bench``: pghd's throughput and latency beside bare-Kafka baselines of the same run."""
