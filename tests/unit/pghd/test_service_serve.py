"""The log filter that keeps aiokafka's repeated connection errors from flooding the logs."""

from __future__ import annotations

import logging

from pghd.service.serve import RepeatFilter


def record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, ("x",), None)


def test_repeats_of_a_library_message_are_dropped() -> None:
    repeat = RepeatFilter(interval_s=60)
    assert repeat.filter(record("aiokafka", "Unable connect to node %s"))
    assert not repeat.filter(record("aiokafka", "Unable connect to node %s"))
    assert repeat.filter(record("aiokafka", "Unable to update metadata from %s"))
    assert repeat.filter(record("pghd.service.producer", "kafka not reachable %s"))
    assert repeat.filter(record("pghd.service.producer", "kafka not reachable %s"))


def test_repeats_pass_again_after_the_interval() -> None:
    repeat = RepeatFilter(interval_s=0)
    assert repeat.filter(record("aiokafka.producer.sender", "retrying %s"))
    assert repeat.filter(record("aiokafka.producer.sender", "retrying %s"))
