"""Routes inside a hub process (the `huitong.services` entry point): loads and checks the
route files when the hub is built (so a hub refuses to start on bad routes), gives the
relay the route queues to declare (so nothing it publishes is dropped for want of a queue),
and on start runs the route workers and the retry scheduler."""
from __future__ import annotations

from bus.broker import Publisher, connect
from bus.logs import get_logger
from bus.topology import route_queue, route_queue_name, route_topology
from bus.worker import Worker
from routes.deliveries import DeliveryStore
from routes.destinations import DestinationContext
from routes.in_flight import InFlight
from routes.loader import load_routes
from routes.pausing import PauseStore
from routes.redelivery import RetryScheduler
from routes.router import Router
from schemas.hardened import HardenedParser, XmlLimits

log = get_logger("huitong.routes")


class RouteRuntime:
    name = "routes"
    kind = "routes"  # started by Hub.start when routes run in this process

    def __init__(self, hub):
        self.hub = hub
        settings = hub.settings
        self.settings = settings
        self.quorum = not settings.embedded_broker
        self.context = DestinationContext(settings, publisher_factory=self._publisher, state_dir=settings.state_dir,
                                          submit=hub.acceptance.accept_many)
        self.parser = HardenedParser(XmlLimits(**settings.xml.model_dump()))
        self.routes = load_routes(settings.routes.dir or None, settings.destinations, self.context,
                                  parser=self.parser)
        self.store = DeliveryStore(hub.engine)
        self.pauses = PauseStore(hub.engine)
        self.store.start_sweep_marks([r.id for r in self.routes.enabled()])
        self.queues = route_topology(self.routes.bindings(), quorum=self.quorum)
        self.workers: list[Worker] = []
        self.scheduler: RetryScheduler | None = None

    def _publisher(self) -> Publisher:
        return Publisher(self.settings.broker_url, confirm_timeout=self.settings.relay.confirm_timeout,
                         queues=self.queues)

    def start(self) -> None:
        routes = self.routes.enabled()
        if not routes:
            return
        options = self.settings.routes
        if self.settings.embedded_broker:
            released = self.store.release_leases()
            if released:
                log.info("routes.retries_released", count=released,
                         reason="the in-memory broker lost the retries handed out before the restart")
        consumed = [route_queue(r.id, r.from_.binding_keys(), quorum=self.quorum) for r in routes]
        paused_queues = lambda: frozenset(route_queue_name(r) for r in self.pauses.paused())  # noqa: E731
        in_flight = InFlight()
        for _ in range(options.threads):
            router = Router(self.routes, self.store, self.parser, self._publisher(), in_flight)
            self.workers.append(Worker(connect(self.settings.broker_url), consumed, router.handle,
                                       prefetch=options.prefetch, batch_size=options.batch_size,
                                       batch_wait=options.batch_wait, paused=paused_queues).start())
        self.scheduler = RetryScheduler(self.store, self._publisher(), routes,
                                        broker_url=self.settings.broker_url, quorum=self.quorum,
                                        poll_interval=options.retry_poll_interval,
                                        lease_seconds=options.retry_lease_seconds,
                                        sweep_after=options.redrive_after_seconds,
                                        paused=self.pauses.paused).start()
        log.info("routes.started", routes=[r.id for r in routes], threads=options.threads)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        self.routes.close()

    def drained(self) -> bool:
        """Nothing waits in a route queue (the embedded hub may then record its drain mark)."""
        conn = connect(self.settings.broker_url)
        try:
            channel = conn.channel()
            for queue in self.queues:
                if queue.name.endswith(".dead"):
                    continue
                _, count, _ = queue(channel).queue_declare(passive=True)
                if count:
                    return False
            return True
        finally:
            conn.release()
