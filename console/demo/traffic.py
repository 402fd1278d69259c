"""Simulated department systems for the demo: each tick a county system pushes a case's next
message (accepted, in process, result) or a registry record, built from the schema samples
with fresh ids and case numbers; about one push in ten is wrong (a bad USCC or citizen-id check
character, times out of order) and is rejected as a real one would be. They call the hub's
acceptance directly, as the SOAP endpoint does once a system has signed in."""
from __future__ import annotations

import datetime as dt
import random
import re
import uuid
from importlib.resources import files

from bus.logs import get_logger
from bus.periodic import PeriodicService
from bus.times import BEIJING

log = get_logger("huitong.demo")

_MID = re.compile(rb"<hx:MessageId>[^<]+</hx:MessageId>")
_CASE = re.compile(rb"<m:CaseNumber>[^<]+</m:CaseNumber>")
_SOURCE = re.compile(rb"<hx:Source>([^<]+)</hx:Source>")
CASE_FLOW = ("CaseAccepted-enterprise.xml", "CaseProcess-review.xml", "CaseResult-approved.xml")
RECORDS = ("EnterpriseRecord-active.xml", "PersonRecord-male.xml", "ProjectRecord-approved.xml",
           "ServiceItem-promised.xml")
WRONG = ("applicant-uscc.USCC_CHECK.xml", "applicant-citizen-id.CITIZEN_ID_CHECK.xml",
         "finished-before-accepted.TIME_ORDER.xml")


def _sample(kind: str, name: str) -> bytes:
    return files("schemas").joinpath("samples", kind, name).read_bytes()


class DemoTraffic(PeriodicService):
    name = "demo-traffic"

    def __init__(self, hub, *, per_second: float = 2.0, wrong_share: float = 0.1, seed: int | None = None):
        self.hub = hub
        self.interval = 1.0 / per_second
        self.wrong_share = wrong_share
        self.random = random.Random(seed)
        self.flow = [_sample("valid", n) for n in CASE_FLOW]
        self.records = [_sample("valid", n) for n in RECORDS]
        self.wrong = [_sample("invalid", n) for n in WRONG]
        self.open_cases: list[tuple] = []  # case number, next step, accepted at, promised days
        self.serial = self.random.randint(1000, 8000)
        self.sent = self.rejected = 0

    def run_once(self) -> None:
        self.push_one()

    def failed(self, exc: Exception) -> None:  # the demo goes on; the hub reports its own trouble
        log.warning("demo.push_failed", error=f"{exc.__class__.__name__}: {exc}")

    def next_message(self) -> bytes:
        roll = self.random.random()
        if roll < self.wrong_share:
            return self._fresh(self.random.choice(self.wrong))
        if roll < self.wrong_share + 0.15:
            return self._fresh(self.random.choice(self.records))
        if not self.open_cases or (len(self.open_cases) < 20 and self.random.random() < 0.4):
            self.serial += 1
            now = dt.datetime.now(BEIJING).replace(microsecond=0)
            # Accepted up to twelve days ago with a promise of 3 to 10 working days: supervision
            # shows green, yellow and red cases.
            accepted = now - dt.timedelta(days=self.random.randint(0, 12), hours=self.random.randint(0, 6))
            self.open_cases.append((f"320382-SCJG-{now:%Y%m%d}-{self.serial % 10000:04d}", 0, accepted,
                                    self.random.choice((3, 5, 10))))
        index = self.random.randrange(len(self.open_cases))
        case, step, accepted, days = self.open_cases[index]
        if step + 1 < len(self.flow):
            self.open_cases[index] = (case, step + 1, accepted, days)
        else:
            self.open_cases.pop(index)
        data = _CASE.sub(f"<m:CaseNumber>{case}</m:CaseNumber>".encode(), self._fresh(self.flow[step]), count=1)
        return _timed(data, accepted, days)

    def push_one(self) -> bool:
        data = self.next_message()
        system = _SOURCE.search(data).group(1).decode()
        receipt = self.hub.accept(data, system=system)
        self.sent += 1
        if not receipt.ok:
            self.rejected += 1
        return receipt.ok

    @staticmethod
    def _fresh(data: bytes) -> bytes:
        return _MID.sub(f"<hx:MessageId>{uuid.uuid4()}</hx:MessageId>".encode(), data, count=1)


def _timed(data: bytes, accepted: dt.datetime, days: int) -> bytes:
    """A case message's times around its acceptance (the samples carry fixed ones)."""
    now = dt.datetime.now(BEIJING).replace(microsecond=0)
    step = min(accepted + dt.timedelta(days=1), now)
    values = {"AppliedAt": accepted - dt.timedelta(minutes=30), "AcceptedAt": accepted,
              "PromisedWorkingDays": days, "PromisedDate": (accepted + dt.timedelta(days=days * 2)).date(),
              "StartedAt": step, "EndedAt": step, "FinishedAt": now}
    for name, value in values.items():
        text = value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)
        data = re.sub(rf"<m:{name}>[^<]+</m:{name}>".encode(), f"<m:{name}>{text}</m:{name}>".encode(), data, count=1)
    return data
