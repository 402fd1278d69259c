"""Registry and case messages for the catalog tests: the samples with the enterprise, source,
case number and times changed."""
from __future__ import annotations

import uuid

from tests.helpers.messages import sample

USCC = "91320382MA1Y2K3P9C"  # the samples' 邳州市恒润建材有限公司
PROJECT = "2026-320382-47-03-004512"
SCJG = "320382.scjgj.djxt"  # market regulation: authoritative for enterprises
ZJJ = "320382.zjj.sgxk"  # housing and construction permits
GAJ = "320382.gaj.hjxt"  # public security


def _replace(data: bytes, pairs: dict[str, str]) -> bytes:
    for old, new in pairs.items():
        assert old.encode() in data, old
        data = data.replace(old.encode(), new.encode())
    return data


def case_accepted(*, source: str = ZJJ, name: str = "邳州市恒润建材有限公司", uscc: str = USCC,
                  case_number: str | None = None, sent_at: str = "2026-11-20T10:15:00+08:00",
                  project_code: str = PROJECT) -> tuple[str, str, bytes]:
    """(message id, case number, envelope) of a CaseAccepted for the enterprise."""
    message_id = str(uuid.uuid4())
    case_number = case_number or f"320382-T-{uuid.uuid4().hex[:12].upper()}"
    data = _replace(sample("CaseAccepted-enterprise.xml"), {
        "2aa70089-7198-53b8-b1f4-eb0a666c45df": message_id, "<hx:Source>320382.scjgj.djxt<": f"<hx:Source>{source}<",
        "<hx:SentAt>2026-11-20T10:15:00+08:00<": f"<hx:SentAt>{sent_at}<",
        "邳州市恒润建材有限公司": name, "91320382MA1Y2K3P9C": uscc, "320382-SCJG-20261120-0001": case_number,
        "2026-320382-47-03-004512": project_code})
    return message_id, case_number, data


def enterprise_record(*, source: str = SCJG, name: str = "邳州市恒润建材有限公司", uscc: str = USCC,
                      sent_at: str = "2026-11-21T10:15:00+08:00") -> tuple[str, bytes]:
    message_id = str(uuid.uuid4())
    data = _replace(sample("EnterpriseRecord-active.xml"), {
        "da7c70f8-abd6-52d0-843c-a79f39f13c0c": message_id, "<hx:Source>320382.scjgj.djxt<": f"<hx:Source>{source}<",
        "<hx:SentAt>2026-11-20T10:15:00+08:00<": f"<hx:SentAt>{sent_at}<",
        "邳州市恒润建材有限公司": name, "91320382MA1Y2K3P9C": uscc})
    return message_id, data
