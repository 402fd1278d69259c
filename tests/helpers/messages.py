"""Builds distinct valid messages from the samples (fresh message ids, same bodies)."""
from __future__ import annotations

import re
import uuid
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "samples"
_MID = re.compile(rb"<hx:MessageId>[^<]+</hx:MessageId>")


def sample(name: str) -> bytes:
    return (SAMPLES / "valid" / name).read_bytes()


def with_message_id(data: bytes, message_id: str | None = None) -> tuple[str, bytes]:
    message_id = message_id or str(uuid.uuid4())
    return message_id, _MID.sub(f"<hx:MessageId>{message_id}</hx:MessageId>".encode(), data, count=1)


def case_results(n: int, source_sample: str = "CaseResult-approved.xml") -> list[tuple[str, bytes]]:
    base = sample(source_sample)
    return [with_message_id(base) for _ in range(n)]
