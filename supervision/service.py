"""The passing of time, in a hub process that runs routes: every sweep interval, recolour the
open cases whose yellow or red day has come, raise provisional anomalies whose grace is
over, and send the alerts not yet sent. Idle unless a supervision destination is configured."""
from __future__ import annotations

import datetime as dt

from bus.database import make_engine
from bus.logs import get_logger
from bus.periodic import PeriodicService
from supervision.alerts import AlertSender
from supervision.store import Policy, SupervisionStore, database_url

log = get_logger("huitong.supervision")


class SupervisionService(PeriodicService):
    name = "supervision"
    kind = "routes"
    first_wait = False  # a hub that was down overnight recolours at once

    def __init__(self, hub):
        settings = hub.settings
        self.interval = settings.supervision.sweep_interval_seconds
        url = database_url(settings)
        self.store = self.sender = None
        if url and settings.supervision.alert_source:
            self.engine = hub.engine if url == settings.effective_database_url else make_engine(url)
            policy = Policy.from_settings(settings)
            self.store = SupervisionStore(self.engine, policy)
            self.sender = AlertSender(self.store, hub.acceptance.accept_many)
            this_year = policy.today(dt.datetime.now(dt.timezone.utc))
            if not policy.calendar.covers(this_year):
                log.warning("supervision.calendar_lacks_year", year=this_year.year,
                            calendar=settings.supervision.calendar or None,
                            consequence="public holidays of this year are unknown: only weekends are off")

    def active(self) -> bool:
        return self.store is not None

    def run_once(self) -> dict:
        swept = self.store.sweep()
        swept["alerts_sent"] = self.sender.send_pending()
        if swept["recoloured"] or swept["anomalies_raised"]:
            log.info("supervision.swept", **swept)
        return swept

    def failed(self, exc: Exception) -> None:  # the database is away: the next sweep catches up
        log.error("supervision.sweep_failed", error=f"{exc.__class__.__name__}: {exc}")
