"""The worker runtime: consumes queues with a prefetch window, hands deliveries to a handler
in batches, and acks only after the handler returned (its effects committed). It owns
reconnects (kombu's ConsumerMixin), batching, pausing queues and graceful shutdown; a route
only says what to do with a batch of messages."""
from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kombu import Connection, Queue
from kombu.mixins import ConsumerMixin

from bus.logs import get_logger

log = get_logger("huitong.worker")


@dataclass(frozen=True, slots=True)
class Delivery:
    queue: str
    message_id: str | None
    routing_key: str
    headers: dict
    body: bytes
    redelivered: bool
    correlation_id: str | None = None


BatchHandler = Callable[[list[Delivery]], None]


class Worker(ConsumerMixin):
    def __init__(self, connection: Connection, queues: list[Queue], handler: BatchHandler, *,
                 prefetch: int = 200, batch_size: int = 100, batch_wait: float = 0.05,
                 paused: Callable[[], frozenset[str]] | None = None, pause_check_seconds: float = 1.0):
        self.connection = connection
        self.queues = queues
        self.handler = handler
        self.prefetch = prefetch
        self.batch_size = min(batch_size, prefetch)
        self.batch_wait = batch_wait
        self._buffer: list[tuple[Delivery, object]] = []
        self._first_at = 0.0
        self._thread: threading.Thread | None = None
        self.handled = 0
        self._failures = 0
        # paused() -> names of queues not to take from now (an operator paused their route)
        self.paused = paused
        self.pause_check_seconds = pause_check_seconds
        self._consumers: dict[str, object] = {}
        self._stopped: set[str] = set()
        self._checked_at = 0.0
        self._ack_multiple = False

    def get_consumers(self, consumer_cls, channel):
        # One consumer per queue, so each delivery knows the queue (route) it came from.
        return [consumer_cls(queues=[q], callbacks=[functools.partial(self._on_message, q.name)],
                             prefetch_count=self.prefetch, accept=["application/xml"])
                for q in self.queues]

    def on_consume_ready(self, connection, channel, consumers, **kwargs) -> None:
        # After every (re)connect all consumers run: stop again the ones that are paused.
        self._consumers = {c.queues[0].name: c for c in consumers}
        self._ack_multiple = connection.transport.driver_type == "amqp"
        self._stopped = set()
        self._checked_at = 0.0
        self._apply_pauses()

    def _apply_pauses(self) -> None:
        if self.paused is None or time.monotonic() - self._checked_at < self.pause_check_seconds:
            return
        self._checked_at = time.monotonic()
        try:
            paused = self.paused()
        except Exception as exc:  # the database is away: keep going as we are
            log.warning("worker.pause_check_failed", error=f"{exc.__class__.__name__}: {exc}")
            return
        for name, consumer in self._consumers.items():
            if name in paused and name not in self._stopped:
                consumer.cancel()
                self._stopped.add(name)
                log.info("worker.queue_paused", queue=name)
            elif name not in paused and name in self._stopped:
                consumer.consume()
                self._stopped.discard(name)
                log.info("worker.queue_resumed", queue=name)

    def _on_message(self, queue_name: str, body, message) -> None:
        if queue_name in self._stopped:
            message.requeue()  # arrived before the pause took effect: it waits in the queue
            return
        props = message.properties
        delivery_info = message.delivery_info
        self._buffer.append((Delivery(
            queue=queue_name, message_id=props.get("message_id"), routing_key=delivery_info.get("routing_key", ""),
            headers=dict(message.headers or {}), body=message.body,
            redelivered=bool(delivery_info.get("redelivered"))), message))
        if len(self._buffer) == 1:
            self._first_at = time.monotonic()
        if len(self._buffer) >= self.batch_size:
            self.flush()

    def on_iteration(self) -> None:
        self._apply_pauses()
        if self._buffer and time.monotonic() - self._first_at >= self.batch_wait:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        try:
            self.handler([delivery for delivery, _ in batch])
        except Exception as exc:
            # Nothing was committed: put the batch back for another try. Retry policy and
            # dead letters per route belong to the routes layer, which catches its own errors.
            log.error("worker.batch_failed", error=f"{exc.__class__.__name__}: {exc}", size=len(batch))
            for _, message in batch:
                message.requeue()
            # The database or a broker is away: do not spin on the same batch.
            self._failures += 1
            time.sleep(min(0.2 * 2 ** self._failures, 10.0))
            return
        self._failures = 0
        if self._ack_multiple:
            # RabbitMQ: one basic.ack up to the batch's last delivery tag, not a frame per
            # message. Every earlier delivery on the channel is in this batch or was rejected
            # back to the queue (paused), so nothing else is acked with it.
            batch[-1][1].ack(multiple=True)
        else:  # kombu's virtual transports ack one tag at a time
            for _, message in batch:
                message.ack()
        self.handled += len(batch)

    def on_consume_end(self, connection, channel) -> None:
        self.flush()  # graceful stop: finish what is buffered before letting go

    def on_connection_error(self, exc, interval) -> None:
        # Unacked messages are redelivered by the broker; drop our copies so none is acked twice.
        self._buffer = []
        log.warning("worker.reconnecting", error=str(exc), retry_in=interval)

    # -- thread helpers ------------------------------------------------------------------
    def start(self) -> "Worker":
        self.should_stop = False
        self._thread = threading.Thread(target=self.run, kwargs={"safety_interval": self.batch_wait},
                                        name="worker", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.should_stop = True
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
