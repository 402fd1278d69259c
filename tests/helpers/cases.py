"""Case messages for supervision tests: one case's acceptance, steps and result, with the
times a test needs."""
from __future__ import annotations

import uuid

SOURCE = "320382.scjgj.djxt"


def _envelope(message_type: str, body: str, *, source: str, message_id: str | None) -> tuple[str, bytes]:
    message_id = message_id or str(uuid.uuid4())
    return message_id, (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<hx:Envelope xmlns:hx="urn:huitong:envelope:1"><hx:Header>'
        f"<hx:MessageId>{message_id}</hx:MessageId><hx:Type>{message_type}</hx:Type>"
        f"<hx:SchemaVersion>1.0</hx:SchemaVersion><hx:Source>{source}</hx:Source>"
        "<hx:SentAt>2026-11-20T10:15:00+08:00</hx:SentAt></hx:Header>"
        f'<hx:Body><m:{message_type} xmlns:m="urn:huitong:case:1">{body}</m:{message_type}></hx:Body>'
        "</hx:Envelope>").encode("utf-8")


def accepted(case: str, at: str, *, days: int = 5, promised_date: str = "2026-12-31", source: str = SOURCE,
             department: str = "scjgj", message_id: str | None = None) -> tuple[str, bytes]:
    """at: the local time of acceptance, e.g. 2026-09-30T09:30:00 (+08:00 is added)."""
    return _envelope("CaseAccepted", (
        f"<m:CaseNumber>{case}</m:CaseNumber><m:RegionCode>320382</m:RegionCode>"
        f"<m:Department><m:Code>{department}</m:Code><m:Name>邳州市市场监督管理局</m:Name></m:Department>"
        "<m:ServiceItem><m:Code>320382-SC-XK-0012</m:Code><m:Version>3</m:Version><m:Name>食品经营许可</m:Name>"
        "</m:ServiceItem><m:CaseType>PROMISED</m:CaseType>"
        '<m:Applicant kind="ENTERPRISE"><m:Name>邳州市恒润建材有限公司</m:Name><m:IdType>USCC</m:IdType>'
        "<m:IdNumber>91320382MA1Y2K3P9C</m:IdNumber></m:Applicant>"
        "<m:ContactPhone>13852161234</m:ContactPhone><m:Channel>ONLINE</m:Channel>"
        f"<m:AppliedAt>{at}+08:00</m:AppliedAt><m:AcceptedAt>{at}+08:00</m:AcceptedAt>"
        f"<m:PromisedWorkingDays>{days}</m:PromisedWorkingDays><m:PromisedDate>{promised_date}</m:PromisedDate>"),
        source=source, message_id=message_id)


def process(case: str, step: int, action: str, at: str, *, name: str = "审查", procedure: str | None = None,
            source: str = SOURCE, message_id: str | None = None) -> tuple[str, bytes]:
    special = f"<m:SpecialProcedure>{procedure}</m:SpecialProcedure>" if procedure else ""
    return _envelope("CaseProcess", (
        f"<m:CaseNumber>{case}</m:CaseNumber><m:StepNumber>{step}</m:StepNumber><m:StepName>{name}</m:StepName>"
        f"<m:Action>{action}</m:Action>{special}<m:Handler>陈静</m:Handler>"
        f"<m:StartedAt>{at}+08:00</m:StartedAt>"), source=source, message_id=message_id)


def result(case: str, at: str, *, outcome: str = "APPROVED", source: str = SOURCE,
           message_id: str | None = None) -> tuple[str, bytes]:
    return _envelope("CaseResult", (
        f"<m:CaseNumber>{case}</m:CaseNumber><m:Result>{outcome}</m:Result>"
        f"<m:FinishedAt>{at}+08:00</m:FinishedAt><m:Handler>刘洋</m:Handler>"), source=source, message_id=message_id)
