"""The measurement codec: round trip, and Undecodable instead of exceptions."""

from __future__ import annotations

import orjson
import pytest
from faust.serializers import codecs

from pghd import wire
from pghd.catalogue import Metric
from pghd.envelope import decode_items, encode_readings, envelope_readings
from processors.codec import (
    CODEC_NAME,
    MeasurementCodec,
    Undecodable,
    decode_measurement,
    decode_record,
)

from .conftest import MakeReading


def test_round_trip_through_the_registered_codec(make_reading: MakeReading) -> None:
    reading = make_reading(72.0)
    data = codecs.dumps(CODEC_NAME, reading)
    assert data == wire.encode(reading)
    assert codecs.loads(CODEC_NAME, data) == [reading]
    bp = make_reading(metric=Metric.BLOOD_PRESSURE, components={"systolic": 120, "diastolic": 80})
    assert MeasurementCodec().loads(MeasurementCodec().dumps(bp)) == [bp]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\x00garbage", "not a valid Measurement"),
        (b"", "not a valid Measurement"),
        (b'{"hello": "world"}', "event_id: Field required"),
        (b"[1, 2, 3]", "not a valid Measurement"),
    ],
)
def test_garbage_and_wrong_schema_decode_to_undecodable(payload: bytes, reason: str) -> None:
    (result,) = codecs.loads(CODEC_NAME, payload)
    assert isinstance(result, Undecodable)
    assert result.payload == payload
    assert reason in result.reason


def test_wrong_unit_and_impossible_or_non_finite_values(make_reading: MakeReading) -> None:
    good = orjson.loads(wire.encode(make_reading(72.0)))
    wrong_unit = decode_measurement(orjson.dumps({**good, "unit": "bpm"}))
    assert isinstance(wrong_unit, Undecodable) and "canonical '/min'" in wrong_unit.reason
    too_high = decode_measurement(orjson.dumps({**good, "value": 400}))
    assert isinstance(too_high, Undecodable)
    assert too_high.reason == "heart_rate: value 400.0 is outside the possible range [20, 300]"
    nan = decode_measurement(orjson.dumps(good).replace(b"72.0", b"NaN"))
    assert isinstance(nan, Undecodable) and "finite" in nan.reason


def test_tombstone_is_undecodable() -> None:
    result = decode_measurement(None)
    assert isinstance(result, Undecodable) and "no value" in result.reason


def test_encoding_other_objects_is_refused() -> None:
    assert MeasurementCodec().dumps(b"raw") == b"raw"
    assert MeasurementCodec().dumps(Undecodable(payload=b"x", reason="r")) == b"x"
    with pytest.raises(TypeError):
        MeasurementCodec().dumps(42)


def test_an_envelope_decodes_to_its_readings_and_a_bad_one_stands_alone(
    make_reading: MakeReading,
) -> None:
    first, second = make_reading(61.0, event_id="e-1"), make_reading(62.0, event_id="e-2")
    ((key, value),) = encode_readings([first, second])
    assert key == b"p-1"
    assert codecs.loads(CODEC_NAME, value) == [first, second]
    envelope = orjson.loads(value)
    envelope["readings"][1]["value"] = 400  # impossible for a heart rate
    envelope["readings"].append({"hello": "world"})
    good, too_high, garbage = codecs.loads(CODEC_NAME, orjson.dumps(envelope))
    assert good == first
    assert isinstance(too_high, Undecodable) and "outside the possible range" in too_high.reason
    assert orjson.loads(too_high.payload)["event_id"] == "e-2"  # the reading, not the record
    assert isinstance(garbage, Undecodable) and "event_id: Field required" in garbage.reason
    assert orjson.loads(garbage.payload) == {"hello": "world"}


def test_an_envelope_without_readings_is_undecodable() -> None:
    (result,) = decode_record(b'{"schema_version": 2, "patient_id": "p-1", "readings": []}')
    assert isinstance(result, Undecodable) and "non-empty list" in result.reason


def test_an_impossible_value_in_an_otherwise_valid_envelope_stands_alone(
    make_reading: MakeReading,
) -> None:
    first, second = make_reading(61.0, event_id="e-1"), make_reading(62.0, event_id="e-2")
    ((_, value),) = encode_readings([first, second])
    envelope = orjson.loads(value)
    envelope["readings"][0]["value"] = 400  # valid as a Measurement, impossible as a pulse
    payload = orjson.dumps(envelope)
    assert envelope_readings(payload) is not None  # the one-pass path reads it
    too_high, good = decode_record(payload)
    assert good == second
    assert isinstance(too_high, Undecodable) and "outside the possible range" in too_high.reason
    assert orjson.loads(too_high.payload)["event_id"] == "e-1"


def test_one_pass_and_per_reading_decoding_agree(make_reading: MakeReading) -> None:
    readings = [make_reading(60.0 + n, event_id=f"e-{n}") for n in range(12)]
    ((_, value),) = encode_readings(readings)
    assert envelope_readings(value) == readings == decode_items(b" " + value)  # not the prefix
    assert envelope_readings(b'{"schema_version":2,"patient_id":"p-1","readings":[{}]}') is None
    assert envelope_readings(wire.encode(readings[0])) is None  # version 1
