"""What a sender gets back: the receipt, given only after the log has committed."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bus.errors import FieldError

ACCEPTED, DUPLICATE, REJECTED = "ACCEPTED", "DUPLICATE", "REJECTED"


@dataclass(frozen=True, slots=True)
class Receipt:
    receipt_id: str
    message_id: str | None
    status: str
    accepted_at: dt.datetime | None
    errors: tuple[FieldError, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in (ACCEPTED, DUPLICATE)
