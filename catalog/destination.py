"""catalog destination: routed registry and case messages update the shared registries.

It always reads the canonical message as accepted (a route's transform is for outside
systems, not for the registries). Applying is idempotent per (source, message id): a message
the broker redelivers, or an auditor replays, changes nothing the second time."""
from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from bus.errors import ConfigError, DeliveryError, RejectedMessage
from catalog.authority import Authority
from catalog.feed import read_message
from catalog.store import CatalogStore
from routes.destinations import DatabaseDestination, Outgoing
from schemas.hardened import HardenedParser


class CatalogDestination(DatabaseDestination):
    type = "catalog"
    holds = "the registries"

    def __init__(self, name, options, context):
        try:
            authority = Authority.from_settings(context.settings)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        super().__init__(name, options, context)
        self.store = CatalogStore(self.engine, authority)
        self.parser = HardenedParser()

    def deliver(self, items: list[Outgoing]) -> list[dict | Exception]:
        outcomes: list[dict | Exception] = []
        for item in items:
            try:
                feed = read_message(self.parser.parse(item.envelope))
            except RejectedMessage as exc:
                outcomes.append(DeliveryError(f"{self.name}: not a canonical message: {exc}",
                                              code="TRANSFORM_FAILED", permanent=True))
                continue
            if feed is None:
                outcomes.append(DeliveryError(f"{self.name} takes registry and case messages, not {item.type}",
                                              code="CATALOG_UNSUPPORTED", permanent=True))
                continue
            try:
                outcomes.append(self.store.apply(feed))
            except SQLAlchemyError as exc:
                outcomes.append(DeliveryError(
                    f"{self.name}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"))
        return outcomes
