"""federation destination: hand the message to the local out-queue of an upstream hub; a
RabbitMQ shovel (see `huitong federation plan`) carries it on. Delivered means the local broker
confirmed it, so the route's record and the queue agree; a crash in between publishes it
again, which the upper hub keeps once (same source and message id: DUPLICATE)."""
from __future__ import annotations

import threading

from bus.broker import Publisher
from bus.errors import BrokerUnavailable, DeliveryError
from federation.queues import federation_queue, in_queue_name, out_queue_name
from routes.destinations import Destination, Outgoing

SYSTEM_ID = r"^[0-9]{6}\.[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_]{0,31}$"


class FederationDestination(Destination):
    type = "federation"
    options_schema = {
        "type": "object", "additionalProperties": False, "required": ["upstream", "hub_id", "upstream_url_env"],
        "properties": {
            "upstream": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,40}$",
                         "description": "A short name of the other hub (the out-queue is huitong.federation.out.<upstream>)."},
            "hub_id": {"type": "string", "pattern": SYSTEM_ID,
                       "description": "This hub's system id at the other hub (it accepts the messages as this system)."},
            "upstream_url_env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                                 "description": "Environment variable holding the other hub's AMQP URL (for the shovel)."},
        },
    }

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        if context.settings.embedded_broker:
            raise ValueError(f"destination {name}: federation moves messages with a RabbitMQ shovel and needs "
                             "RabbitMQ (broker_url amqp://…); on the embedded broker forward with the hub destination")
        self.queue = out_queue_name(options["upstream"])
        self.remote_queue = in_queue_name(options["hub_id"])
        self.publisher = Publisher(context.settings.broker_url, queues=[federation_queue(self.queue)])
        self._lock = threading.Lock()  # one publisher (one channel) for the route's worker threads

    def deliver(self, items: list[Outgoing]) -> list[dict | Exception]:
        entries = [(self.queue, item.payload, {"message_id": item.message_id, "correlation_id": item.correlation_id,
                                               "headers": {"x-huitong-source": item.source,
                                                           "x-huitong-type": item.type}}) for item in items]
        try:
            with self._lock:
                self.publisher.publish_raw(entries)
        except BrokerUnavailable as exc:
            error = DeliveryError(f"{self.name}: {exc}", code="BROKER_UNAVAILABLE")
            return [error] * len(items)
        return [{"queue": self.queue, "to": self.remote_queue} for _ in items]

    def close(self) -> None:
        self.publisher.close()
