"""A test consumer: a private queue bound to the message exchange that records what arrives."""
from __future__ import annotations

import time
import uuid
from collections import Counter

from kombu import Queue

from bus.broker import connect
from bus.topology import MESSAGES


class Capture:
    def __init__(self, broker_url: str, binding: str = "#"):
        self.conn = connect(broker_url)
        self.channel = self.conn.channel()
        MESSAGES(self.channel).declare()
        self.queue = Queue(f"test.capture.{uuid.uuid4().hex[:8]}", exchange=MESSAGES, routing_key=binding,
                           durable=False, auto_delete=False)
        self.queue(self.channel).declare()
        self.seen: Counter = Counter()
        self.bodies: dict[str, bytes] = {}
        self.routing_keys: dict[str, str] = {}

    def collect(self, expected: set[str], timeout: float = 20.0) -> Counter:
        """Drain until every expected message id was seen (or the timeout)."""
        deadline = time.monotonic() + timeout
        bound = self.queue(self.channel)
        while time.monotonic() < deadline:
            message = bound.get(no_ack=True, accept=["application/xml"])
            if message is None:
                if expected <= set(self.seen):
                    break
                time.sleep(0.02)
                continue
            mid = message.properties.get("message_id")
            self.seen[mid] += 1
            self.bodies[mid] = message.body
            self.routing_keys[mid] = message.delivery_info.get("routing_key")
        return self.seen

    def close(self) -> None:
        try:
            self.queue(self.channel).delete()
        finally:
            self.conn.release()
