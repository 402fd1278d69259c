"""Connections and confirmed publishing. On RabbitMQ a batch is published with pipelined
publisher confirms: every message goes out, then the relay waits once for all the acks
(one round trip per batch, not per message). The in-memory transport routes in-process,
so there is nothing to confirm."""
from __future__ import annotations

import time

from kombu import Connection, Exchange, Producer

from bus.amqp_frames import publish_frames
from bus.errors import BrokerUnavailable
from bus.topology import DIRECT, MESSAGES, declare

# How much of a batch's bodies the publisher gathers before a write: one write for a batch of
# ordinary messages, bounded memory for a batch of large ones.
WRITE_CHUNK = 256 * 1024
# What every message of the hub carries, as py-amqp names the properties.
_FIXED_PROPERTIES = {"content_type": "application/xml", "content_encoding": "binary", "delivery_mode": 2}
# kombu polls virtual transports; the default second would add a second of latency per hop.
MEMORY_OPTIONS = {"polling_interval": 0.01}


def connect(url: str) -> Connection:
    options = MEMORY_OPTIONS if url.startswith("memory://") else {}
    return Connection(url, transport_options=options, heartbeat=0 if url.startswith("memory") else 30,
                      connect_timeout=10)


def logged_message(routing_key: str, body: bytes, *, seq: int, message_id: str, source: str, type: str,
                   correlation_id: str | None = None, headers: dict | None = None) -> tuple:
    """A publish_raw entry for a message of the exchange log: its seq, source and type travel
    in the headers, so consumers decide most things without parsing the body."""
    return (routing_key, body, {"message_id": message_id, "correlation_id": correlation_id,
                                "headers": {"x-huitong-seq": seq, "x-huitong-source": source,
                                            "x-huitong-type": type, **(headers or {})}})


class Publisher:
    """Publishes batches of (routing key, body, properties) and returns only when the broker
    has taken responsibility for every one of them; raises BrokerUnavailable otherwise."""

    def __init__(self, url: str, *, confirm_timeout: float = 30.0, queues=()):
        self.url = url
        self.confirm_timeout = confirm_timeout
        self.queues = list(queues)  # declared on connect, so nothing published to them is dropped
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._confirms = not url.startswith("memory://")
        self._outstanding: set[int] = set()  # delivery tags the broker has not confirmed yet
        self._nacked = 0
        self._next_tag = 1

    def _ensure(self) -> Producer:
        if self._producer is None:
            conn = connect(self.url)
            conn.ensure_connection(max_retries=1)
            channel = conn.channel()
            declare(channel, self.queues)
            if self._confirms:
                channel.confirm_select()
                channel.events["basic_ack"].add(self._on_ack)
                channel.events["basic_nack"].add(self._on_nack)
                self._next_tag = 1
            # No default exchange on the producer: exchange="" must mean the default exchange.
            self._conn, self._producer = conn, Producer(channel)
        return self._producer

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._outstanding = {tag for tag in self._outstanding if tag > delivery_tag}
        else:
            self._outstanding.discard(delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked += 1
        self._on_ack(delivery_tag, multiple)

    def publish_batch(self, messages) -> None:
        """Logged messages (Pending) onto the message exchange."""
        self.publish_raw([logged_message(m.routing_key, m.body, seq=m.seq, message_id=m.message_id,
                                         source=m.source, type=m.type, correlation_id=m.correlation_id)
                          for m in messages], exchange=MESSAGES)

    def publish_raw(self, entries, *, exchange=DIRECT) -> None:
        """(routing key, body, properties) entries, by default straight to the queue the routing
        key names (the default exchange): retries, forwards and dead letters go to one route."""
        try:
            producer = self._ensure()
            first = self._next_tag
            self._nacked = 0
            if self._confirms:
                self._outstanding = set(range(first, first + len(entries)))
            if self._conn.transport.driver_type == "amqp":
                self._write_frames(producer.channel, exchange, entries)
            else:  # the in-memory transport routes what kombu hands it
                for routing_key, body, properties in entries:
                    producer.publish(body, exchange=exchange, routing_key=routing_key,
                                     content_type="application/xml", content_encoding="binary",
                                     delivery_mode=2, retry=False, **properties)
            self._next_tag = first + len(entries)
            if self._confirms:
                self._wait_for_confirms()
        except BrokerUnavailable:
            self.close()
            raise
        except Exception as exc:  # socket errors, channel closed, connection refused ...
            self.close()
            raise BrokerUnavailable(f"broker did not take the batch: {exc.__class__.__name__}: {exc}") from exc

    @staticmethod
    def _write_frames(channel, exchange, entries) -> None:
        """RabbitMQ: the batch as AMQP frames in one write (bus.amqp_frames says why), with the
        properties kombu's publish would give each message."""
        connection = channel.connection
        name = exchange.name if isinstance(exchange, Exchange) else exchange
        frames: list[bytes] = []
        buffered = 0
        for routing_key, body, properties in entries:
            props = {**_FIXED_PROPERTIES, **properties}
            props["application_headers"] = props.pop("headers", None)  # py-amqp's name for the table
            frames += publish_frames(channel.channel_id, name, routing_key, body, props, connection.frame_max)
            buffered += len(body)
            if buffered >= WRITE_CHUNK:  # large messages: the batch is not copied whole into memory
                connection.transport.write(b"".join(frames))
                frames, buffered = [], 0
        if frames:
            connection.transport.write(b"".join(frames))
        connection.bytes_sent += 1  # sent something: no heartbeat needed for now

    def _wait_for_confirms(self) -> None:
        deadline = time.monotonic() + self.confirm_timeout
        while self._outstanding:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerUnavailable(f"broker did not confirm within {self.confirm_timeout}s")
            try:
                self._conn.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        if self._nacked:
            raise BrokerUnavailable(f"broker refused {self._nacked} message(s) of the batch")

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:
                pass
        self._conn = self._producer = None
