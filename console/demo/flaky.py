"""demo_flaky: a destination standing for a department system that now and then times out.
One message in `fail_one_in` (chosen by its id, so the same ones every time) fails its first
`failures` attempts and is taken after that, so it becomes a dead letter that an operator's
retry then gets delivered. For the demo and the console's tests; never for production."""
from __future__ import annotations

import hashlib
import threading
import time

from bus.errors import DeliveryError
from routes.destinations import Destination, Outgoing


class FlakyDestination(Destination):
    type = "demo_flaky"
    options_schema = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "fail_one_in": {"type": "integer", "minimum": 1, "default": 6,
                            "description": "One message in this many is troubled."},
            "failures": {"type": "integer", "minimum": 0, "default": 3,
                         "description": "How many attempts of a troubled message fail."},
            "delay_ms": {"type": "number", "minimum": 0, "default": 0,
                         "description": "Time each batch takes (a slow system)."},
        },
    }

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        self.fail_one_in = options.get("fail_one_in", 6)
        self.failures = options.get("failures", 3)
        self.delay = options.get("delay_ms", 0) / 1000
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()

    def troubled(self, message_id: str) -> bool:
        return int(hashlib.sha256(message_id.encode()).hexdigest()[:8], 16) % self.fail_one_in == 0

    def deliver(self, items: list[Outgoing]) -> list[dict | Exception]:
        if self.delay:
            time.sleep(self.delay)
        out: list[dict | Exception] = []
        with self.lock:
            if len(self.attempts) > 100_000:
                self.attempts.clear()
            for item in items:
                if not self.troubled(item.message_id):
                    out.append({"accepted": True})
                    continue
                tried = self.attempts.get(item.message_id, 0) + 1
                self.attempts[item.message_id] = tried
                if tried <= self.failures:
                    out.append(DeliveryError(f"{self.name}: no answer within 10 s (demo timeout, attempt {tried})",
                                             code="DESTINATION_TIMEOUT"))
                else:
                    out.append({"accepted": True, "after_attempts": tried})
        return out
