"""supervision destination: routed case messages (CaseAccepted, CaseProcess, CaseResult) feed
electronic supervision. Like the catalog it reads the canonical message as accepted, and it
is idempotent per (source, message id), so redeliveries and replays change nothing twice.
Alerts the batch raised are sent right after its commit (and by the sweep if that fails)."""
from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from bus.errors import ConfigError, DeliveryError, RejectedMessage
from bus.logs import get_logger
from routes.destinations import DatabaseDestination, Outgoing
from schemas.hardened import HardenedParser
from schemas.namespaces import ENVELOPE
from supervision.alerts import AlertSender
from supervision.lifecycle import CASE_TYPES, facts_of
from supervision.store import Policy, SupervisionStore

log = get_logger("huitong.supervision")
_BODY = f"{{{ENVELOPE}}}Body"


class SupervisionDestination(DatabaseDestination):
    type = "supervision"
    holds = "supervision"

    def __init__(self, name, options, context):
        try:
            policy = Policy.from_settings(context.settings)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if not policy.alert_source:
            raise ValueError("supervision.alert_source is not set: the system id its alerts are sent as "
                             "(e.g. 320382.huitong.jiancha)")
        super().__init__(name, options, context)
        self.store = SupervisionStore(self.engine, policy)
        self.sender = AlertSender(self.store, context.submit) if context.submit else None
        self.parser = HardenedParser()

    def deliver(self, items: list[Outgoing]) -> list[dict | Exception]:
        outcomes: list[dict | Exception | None] = [None] * len(items)
        batch, places = [], []
        for i, item in enumerate(items):
            if item.type not in CASE_TYPES:
                outcomes[i] = DeliveryError(f"{self.name} takes case messages, not {item.type}",
                                            code="SUPERVISION_UNSUPPORTED", permanent=True)
                continue
            try:
                body = self.parser.parse(item.envelope).find(_BODY)[0]
            except (RejectedMessage, TypeError, IndexError) as exc:
                outcomes[i] = DeliveryError(f"{self.name}: not a canonical message: {exc}",
                                            code="TRANSFORM_FAILED", permanent=True)
                continue
            batch.append(facts_of(item.type, body, message_id=item.message_id, source=item.source))
            places.append(i)
        if batch:
            try:
                for i, outcome in zip(places, self.store.apply(batch)):
                    outcomes[i] = outcome
            except SQLAlchemyError as exc:
                error = DeliveryError(f"{self.name}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
                for i in places:
                    outcomes[i] = error
                return outcomes  # type: ignore[return-value]
            self.send_alerts()
        return outcomes  # type: ignore[return-value]

    def send_alerts(self) -> None:
        """Best effort: the alerts are committed; the sweep sends what this could not."""
        if self.sender is None:
            return
        try:
            self.sender.send_pending()
        except Exception as exc:  # noqa: BLE001 - the delivery itself succeeded
            log.warning("supervision.alerts_deferred", error=f"{exc.__class__.__name__}: {exc}")
