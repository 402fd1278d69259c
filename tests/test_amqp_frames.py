"""The relay's hand-written basic.publish frames are byte for byte what py-amqp writes for the
same message, for the properties the hub sends and for anything it hands to py-amqp instead.
(Every RabbitMQ test of the suite then consumes what they carry.)"""
from __future__ import annotations

import types

import pytest
from amqp import Message
from amqp.method_framing import frame_writer
from amqp.serialization import dumps

from bus.amqp_frames import encode_properties, publish_frames

HEADERS = {"x-huitong-seq": 12, "x-huitong-source": "320382.scjgj.djxt", "x-huitong-type": "CaseResult"}
PROPERTIES = [
    {},
    {"content_type": "application/xml", "content_encoding": "binary", "delivery_mode": 2},
    {"content_type": "application/xml", "content_encoding": "binary", "delivery_mode": 2,
     "application_headers": HEADERS, "message_id": "6f1c2d3e-0000-4000-8000-000000000001"},
    {"content_type": "application/xml", "delivery_mode": 2, "correlation_id": "c-1", "message_id": "m-1",
     "application_headers": {"big": 2 ** 40, "negative": -5, "edge": 2 ** 31 - 1, "beyond": 2 ** 31,
                             "none": None, "text": "办件 受理 \u2028 😀", "empty": ""}},
    # outside what the module writes itself: handed to py-amqp's serializer
    {"content_type": "application/xml", "priority": 5, "application_headers": {"nested": {"a": 1}, "flag": True}},
    {"message_id": "m-2", "application_headers": {"when": 1.5}},
]


@pytest.mark.parametrize("properties", PROPERTIES)
def test_properties_are_encoded_as_py_amqp_encodes_them(properties):
    assert encode_properties(properties) == Message(**properties)._serialize_properties()


@pytest.mark.parametrize("size", [0, 915, 4088, 4089, 20000])
def test_a_publish_is_framed_as_py_amqp_frames_it(size):
    frame_max = 4096  # small, so that bodies of several frames are compared too
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    properties = PROPERTIES[2]
    written = []
    connection = types.SimpleNamespace(frame_max=frame_max, bytes_sent=0)
    write = frame_writer(connection, types.SimpleNamespace(write=lambda data: written.append(bytes(data))))
    write(1, 3, (60, 40), dumps("Bssbb", (0, "huitong.messages", "CaseResult.320382.scjgj.djxt", False, False)),
          Message(body, **properties))
    ours = b"".join(publish_frames(3, "huitong.messages", "CaseResult.320382.scjgj.djxt", body, properties,
                                   frame_max))
    assert ours == b"".join(written)


def test_a_routing_key_longer_than_an_amqp_short_string_is_refused():
    with pytest.raises(ValueError, match="255 bytes"):
        publish_frames(1, "", "k" * 256, b"<x/>", {}, 131072)


def test_a_batch_of_large_messages_is_written_in_bounded_pieces_and_whole():
    from bus.broker import WRITE_CHUNK, Publisher
    writes = []
    connection = types.SimpleNamespace(frame_max=131072, bytes_sent=0,
                                       transport=types.SimpleNamespace(write=writes.append))
    channel = types.SimpleNamespace(channel_id=1, connection=connection)
    bodies = [bytes([i]) * 100_000 for i in range(40)]  # 4 MB in one batch
    Publisher._write_frames(channel, "", [(f"q{i}", body, {"message_id": f"m{i}"}) for i, body in enumerate(bodies)])
    assert len(writes) > 1 and max(map(len, writes)) < WRITE_CHUNK + 2 * 100_000
    expected = b"".join(b"".join(publish_frames(
        1, "", f"q{i}", body, {"content_type": "application/xml", "content_encoding": "binary", "delivery_mode": 2,
                               "message_id": f"m{i}"}, 131072)) for i, body in enumerate(bodies))
    assert b"".join(writes) == expected
