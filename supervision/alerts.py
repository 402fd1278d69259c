"""Raised alerts go out as canonical SupervisionAlert messages through the hub's one door
(acceptance into the exchange log), so routes carry them to the supervision system by SOAP
or file like any message. An alert's message id is fixed by its key, so sending it again
after a crash is a DUPLICATE, never a second alert."""
from __future__ import annotations

import json

from lxml import etree
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bus.envelope import envelope_xml
from bus.logs import get_logger
from schemas.namespaces import SUPERVISION
from supervision.clock import RED, YELLOW, used_days
from supervision.models import SupervisedCase, SupervisedMessage, SupervisionAlert
from supervision.store import RAISED, SupervisionStore, pauses_from_json, utcnow

log = get_logger("huitong.supervision")
_S = f"{{{SUPERVISION}}}"


def alert_body(alert: SupervisionAlert, case: SupervisedCase | None, causes: list[tuple[str, str]],
               used: int | None) -> etree._Element:
    root = etree.Element(f"{_S}SupervisionAlert", nsmap={"s": SUPERVISION})

    def add(name: str, value, parent=root):
        if value is not None:
            etree.SubElement(parent, f"{_S}{name}").text = str(value)

    add("CaseNumber", alert.case_number)
    add("Kind", alert.kind)
    if case is not None:
        add("RegionCode", case.region)
        if case.department_code and case.department_name:
            department = etree.SubElement(root, f"{_S}Department")
            add("Code", case.department_code, department)
            add("Name", case.department_name, department)
    add("RaisedAt", (alert.raised_at or alert.noticed_at).isoformat(timespec="seconds"))
    if case is not None and alert.kind in (YELLOW, RED) and case.accepted_at is not None:
        add("AcceptedAt", case.accepted_at.isoformat(timespec="seconds"))
        add("LimitWorkingDays", case.limit_days)
        add("Deadline", case.deadline.isoformat() if case.deadline else None)
        add("UsedWorkingDays", used)
    add("Text", alert.text[:4000])
    for message_id, source in causes[:50]:
        cause = etree.SubElement(root, f"{_S}Cause")
        add("MessageId", message_id, cause)
        add("Source", source, cause)
    return root


class AlertSender:
    def __init__(self, store: SupervisionStore, submit):
        """submit(list[bytes], system=...) -> receipts: the hub's Acceptance.accept_many."""
        self.store = store
        self.submit = submit

    def send_pending(self, *, limit: int = 500) -> int:
        """Send raised alerts not yet sent; returns how many the exchange log took."""
        policy = self.store.policy
        if not policy.alert_source:
            return 0
        engine = self.store.engine
        with Session(engine, expire_on_commit=False) as session:
            alerts = session.scalars(select(SupervisionAlert)
                                     .where(SupervisionAlert.status == RAISED, SupervisionAlert.sent_at.is_(None),
                                            SupervisionAlert.send_error.is_(None))
                                     .order_by(SupervisionAlert.id).limit(limit)).all()
            if not alerts:
                return 0
            numbers = {a.case_number for a in alerts}
            cases = {c.case_number: c for c in session.scalars(
                select(SupervisedCase).where(SupervisedCase.case_number.in_(numbers)))}
            ids = {i for a in alerts for i in json.loads(a.message_ids)}
            sources = dict(session.execute(select(SupervisedMessage.message_id, SupervisedMessage.source)
                                           .where(SupervisedMessage.message_id.in_(ids))).all()) if ids else {}
        items = []
        for a in alerts:
            case = cases.get(a.case_number)
            used = None
            if case is not None and case.accepted_day is not None and a.kind in (YELLOW, RED):
                used = used_days(policy.calendar, case.accepted_day, pauses_from_json(case.pauses),
                                 policy.today(a.raised_at or a.noticed_at))
            causes = [(i, sources[i]) for i in json.loads(a.message_ids) if i in sources]
            items.append(envelope_xml("SupervisionAlert", alert_body(a, case, causes, used), policy.alert_source,
                                      message_id=a.alert_message_id, sent_at=utcnow()))
        receipts = self.submit(items, system=policy.alert_source)
        now, sent, failed = utcnow(), [], []
        for a, receipt in zip(alerts, receipts):
            if receipt.ok:
                sent.append(a.id)
            else:
                failed.append((a.id, "; ".join(f"{e.code} {e.path}: {e.text}" for e in receipt.errors)[:2000]))
        with engine.begin() as conn:
            if sent:
                conn.execute(update(SupervisionAlert).where(SupervisionAlert.id.in_(sent)).values(sent_at=now))
            for alert_id, error in failed:
                log.error("supervision.alert_refused", alert_id=alert_id, error=error)
                conn.execute(update(SupervisionAlert).where(SupervisionAlert.id == alert_id).values(send_error=error))
        return len(sent)

