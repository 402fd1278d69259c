"""route: hand the message to another route's queue. The receiving route applies its own
`when`, transform and destinations, and keeps its own delivery records, so a forward is as
idempotent as any other hop. Each worker thread publishes on its own channel."""
from __future__ import annotations

import threading

from bus.broker import logged_message
from bus.errors import BrokerUnavailable, DeliveryError
from bus.topology import route_queue_name
from routes.destinations import Destination, Outgoing


class ForwardDestination(Destination):
    type = "route"
    options_schema = {"type": "object", "additionalProperties": False, "required": ["route"],
                      "properties": {"route": {"type": "string"}}}

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        self.queue = route_queue_name(options["route"])
        self._local = threading.local()
        self._publishers = []

    def _publisher(self):
        publisher = getattr(self._local, "publisher", None)
        if publisher is None:
            publisher = self._local.publisher = self.context.publisher_factory()
            self._publishers.append(publisher)
        return publisher

    def deliver(self, items: list[Outgoing]) -> list[dict | Exception]:
        entries = [logged_message(self.queue, item.payload, seq=item.message_seq, message_id=item.message_id,
                                  source=item.source, type=item.type, correlation_id=item.correlation_id,
                                  headers={"x-huitong-forwarded-from": item.route})
                   for item in items]
        try:
            self._publisher().publish_raw(entries)
        except BrokerUnavailable as exc:
            return [DeliveryError(f"forward to {self.options['route']}: {exc}")] * len(items)
        return [{"queue": self.queue}] * len(items)

    def close(self) -> None:
        for publisher in self._publishers:
            publisher.close()
