"""basic.publish written out as AMQP 0-9-1 frames, a whole batch in one buffer.

The relay publishes every message of the exchange log once. Through kombu's Producer (and
py-amqp under it) a message cost ~45 us of Python on the 2-core machine: a kombu and a py-amqp
message object, the properties through a generic serializer, one socket write each. The
frames are simple and fixed (AMQP 0-9-1 section 4.2.6 and the Basic class), so the publisher
builds them here for the properties it sets, and writes a batch with one sendall: ~12 us a
message. Properties outside that set go through py-amqp's own serializer, and the test
suite checks that both give the same bytes."""
from __future__ import annotations

from struct import Struct

from amqp.basic_message import Message as _AmqpMessage

FRAME_END = b"\xce"
_FRAME_HEAD = Struct(">BHI")  # type, channel, payload size
_PUBLISH = Struct(">HHH").pack(60, 40, 0)  # class basic, method publish, reserved ticket
_CONTENT_HEAD = Struct(">HHQ")  # class basic, weight 0, body size
_LONG = Struct(">I")
_TABLE_INT = Struct(">ci")
_TABLE_LONG = Struct(">cq")
_FLAGS = Struct(">H")


def publish_frames(channel: int, exchange: str, routing_key: str, body: bytes, properties: dict,
                   frame_max: int) -> list[bytes]:
    """The frames of one basic.publish (mandatory and immediate off): method, content header,
    and the body in frames of at most frame_max bytes."""
    method = _PUBLISH + _shortstr(exchange) + _shortstr(routing_key) + b"\x00"
    header = _CONTENT_HEAD.pack(60, 0, len(body)) + encode_properties(properties)
    frames = [_FRAME_HEAD.pack(1, channel, len(method)), method, FRAME_END,
              _FRAME_HEAD.pack(2, channel, len(header)), header, FRAME_END]
    chunk = frame_max - 8  # a frame's own head and end take 8 of its bytes
    for start in range(0, len(body), chunk):
        part = body[start:start + chunk]
        frames += (_FRAME_HEAD.pack(3, channel, len(part)), part, FRAME_END)
    return frames


def encode_properties(properties: dict) -> bytes:
    """Property flags and list of a content header, as py-amqp's Message would write them.
    Keys are py-amqp's (application_headers for the headers table); None means absent."""
    if not _OWN_NAMES.issuperset(properties) or not _plain_table(properties.get("application_headers") or {}):
        return _AmqpMessage(**properties)._serialize_properties()
    flags, out = 0, []
    for name, flag, encode in _OWN:
        value = properties.get(name)
        if value is not None:
            flags |= flag
            out.append(encode(value))
    return _FLAGS.pack(flags) + b"".join(out)


def _plain_table(table: dict) -> bool:
    """Headers of the kinds the relay sends (text, whole numbers, none); others take py-amqp."""
    return all(value is None or type(value) in (str, int) for value in table.values())


def _shortstr(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    if len(data) > 255:
        raise ValueError(f"AMQP short string longer than 255 bytes: {value[:40]!r}...")
    return bytes((len(data),)) + data


def _table(table: dict) -> bytes:
    out = []
    for key, value in table.items():
        out.append(_shortstr(key))
        if type(value) is str:
            data = value.encode("utf-8", "surrogatepass")
            out += (b"S", _LONG.pack(len(data)), data)
        elif value is None:
            out.append(b"V")
        elif -2147483647 <= value <= 2147483647:  # py-amqp's bounds for a 32-bit 'I'
            out.append(_TABLE_INT.pack(b"I", value))
        else:
            out.append(_TABLE_LONG.pack(b"L", value))
    data = b"".join(out)
    return _LONG.pack(len(data)) + data


def _octet(value: int) -> bytes:
    return bytes((value,))


# The Basic properties this module encodes itself: name, flag bit (AMQP 0-9-1 order), encoder.
_OWN = (("content_type", 1 << 15, _shortstr), ("content_encoding", 1 << 14, _shortstr),
        ("application_headers", 1 << 13, _table), ("delivery_mode", 1 << 12, _octet),
        ("correlation_id", 1 << 10, _shortstr), ("message_id", 1 << 7, _shortstr))
_OWN_NAMES = {name for name, _, _ in _OWN}
