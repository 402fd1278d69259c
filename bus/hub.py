"""The hub in one process: exchange log, validator, acceptance and relay, wired from
Settings. Adapters get `hub.acceptance`; the HTTP app gets the hub."""
from __future__ import annotations

import os
from importlib.metadata import entry_points

from bus.acceptance import Acceptance
from bus.broker import Publisher
from bus.config import Settings
from bus.database import ensure_schema, make_engine
from bus.exchange_log import ExchangeLog
from bus.logs import get_logger
from bus.receipts import Receipt
from bus.relay import Relay
from bus.secret_box import SecretBox
from bus.systems import SystemRegistry
from schemas.hardened import XmlLimits
from schemas.validation import MessageValidator

log = get_logger("huitong.hub")


class Hub:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = make_engine(settings.effective_database_url,
                                  synchronous=settings.log_store.sqlite_synchronous)
        ensure_schema(self.engine, auto_upgrade=settings.auto_upgrade)
        self.validator = MessageValidator(XmlLimits(**settings.xml.model_dump()))
        self.log = ExchangeLog(self.engine, max_batch=settings.log_store.max_batch,
                               keep_rejected_bodies_up_to=settings.xml.max_bytes,
                               nonce_keep_seconds=2 * settings.soap.created_tolerance_seconds,
                               commit_linger=settings.log_store.commit_linger_seconds)
        self.acceptance = Acceptance(self.validator, self.log)
        self.systems = SystemRegistry(self.engine, SecretBox.from_settings(settings),
                                      cache_seconds=settings.soap.registry_cache_seconds)
        # Services that plug into the hub (routes): built now, so bad route files stop the hub
        # before it accepts anything; their queues are declared by the relay's publisher.
        self.services = [ep.load()(self) for ep in entry_points(group="huitong.services")]
        queues = [q for service in self.services for q in service.queues]
        self.relay = Relay(self.log, Publisher(settings.broker_url, confirm_timeout=settings.relay.confirm_timeout,
                                               queues=queues),
                           batch_size=settings.relay.batch_size, poll_interval=settings.relay.poll_interval,
                           scan_grace=settings.relay.scan_grace_seconds, linger=settings.relay.linger_seconds)
        self.log.on_commit.append(self.relay.offer)
        self._relay_running = False
        self._started = False
        self.on_stop: list = []  # callables run first when the hub stops (e.g. the console's pulse)

    def service(self, name: str):
        return next(s for s in self.services if s.name == name)

    def start(self, *, relay: bool | None = None, routes: bool | None = None,
              adapters: bool | None = None) -> "Hub":
        """relay, routes (route workers) and adapters (inboxes, front databases) default to
        the configuration's relay.enabled, routes.run and adapters.run."""
        self._started = True
        added = self.systems.seed(self.settings.systems, os.environ)
        if added:
            log.info("systems.seeded", systems=added)
        self.log.start()
        wanted = {"routes": self.settings.routes.run if routes is None else routes,
                  "adapters": self.settings.adapters.run if adapters is None else adapters,
                  "audit": self.settings.audit.seal}
        for service in self.services:
            if wanted[service.kind]:
                service.start()
        if self.settings.relay.enabled if relay is None else relay:
            if self.settings.embedded_broker:
                requeued = self.log.requeue_volatile()
                if requeued:
                    log.info("relay.requeued_after_crash", count=requeued,
                             reason="the in-memory broker lost what the previous process published")
            self.relay.start()
            self._relay_running = True
        return self

    def stop(self) -> None:
        for stop in self.on_stop:
            stop()
        relay_ran = self._relay_running
        if self._relay_running:
            self.relay.stop()
            self._relay_running = False
        for service in self.services:
            service.stop()  # route workers finish their batch and ack
        # Asked only where it matters: a hub whose relay never ran declared no route queues.
        drained = (relay_ran and self.settings.embedded_broker
                   and all(service.drained() for service in self.services))
        self.log.stop()  # commits what is queued, PUBLISHED marks included
        if drained:
            # The route queues are empty, so what was published is done with; otherwise (and
            # after a crash) requeue_volatile() re-publishes it at the next start.
            self.log.mark_volatile_drained()
        self.engine.dispose()

    def accept(self, data: bytes, *, system: str) -> Receipt:
        return self.acceptance.accept(data, system=system)

    def __enter__(self) -> "Hub":
        return self if self._started else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
