"""The receiving side of federation: for each hub named in federation.inbound, consume its
in-queue and accept every message into this hub's exchange log as that hub's system, with its
grants (deny by default; FORWARD lets it carry other systems' messages, keeping their source).
A message is acknowledged only after the log committed its receipt — ACCEPTED, DUPLICATE (the
shovel or the sender tried twice) or REJECTED (logged with its reasons, as any refusal). While
the sending hub is unknown or disabled here, its messages stay in the queue."""
from __future__ import annotations

from bus.broker import connect
from bus.errors import HuitongError
from bus.logs import get_logger
from bus.worker import Delivery, Worker
from federation.queues import IN_PREFIX, federation_queue, in_queue_name

log = get_logger("huitong.federation")


class SenderNotAllowed(HuitongError):
    code = "NOT_AUTHORIZED"


class FederationInbound:
    name = "federation"
    kind = "adapters"  # inbound, like the inboxes and front databases

    def __init__(self, hub):
        self.hub = hub
        settings = hub.settings
        self.senders = list(settings.federation.inbound)
        if self.senders and settings.embedded_broker:
            raise ValueError("federation.inbound needs RabbitMQ (broker_url amqp://…): a shovel cannot reach "
                             "the embedded broker; hubs on it forward with the hub destination")
        self.queues = [federation_queue(in_queue_name(s)) for s in self.senders]
        self.worker: Worker | None = None

    def start(self) -> None:
        if not self.senders or self.worker is not None:
            return
        self.worker = Worker(connect(self.hub.settings.broker_url), self.queues, self.accept,
                             prefetch=400, batch_size=200, batch_wait=0.05).start()
        log.info("federation.inbound_started", senders=self.senders)

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def drained(self) -> bool:
        return True

    def accept(self, deliveries: list[Delivery]) -> None:
        """One batch; raising leaves it in the queue for another try (the worker's contract)."""
        by_sender: dict[str, list[bytes]] = {}
        for d in deliveries:
            by_sender.setdefault(d.queue[len(IN_PREFIX):], []).append(d.body)
        for sender, bodies in by_sender.items():
            system = self.hub.systems.get(sender)
            if system is None or not system.enabled:
                raise SenderNotAllowed(f"hub {sender} is {'not registered' if system is None else 'disabled'} here: "
                                       f"its {len(bodies)} message(s) wait in {in_queue_name(sender)}")
            receipts = self.hub.acceptance.accept_many(bodies, system=sender, grants=system.grants)
            refused = [r for r in receipts if not r.ok]
            if refused:
                log.warning("federation.refused", sender=sender, count=len(refused),
                            codes=sorted({r.errors[0].code for r in refused if r.errors}))
