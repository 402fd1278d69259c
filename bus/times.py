"""Points in time as people give them (command line, query strings): ISO 8601 dates or times,
with a zone or without one, which means Beijing time, as the departments read their clocks."""
from __future__ import annotations

import datetime as dt

BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")


def parse_moment(text: str) -> dt.datetime:
    """2026-11-21, 2026-11-21T08:30, 2026-11-21T08:30+08:00, …Z; ValueError otherwise."""
    moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=BEIJING)
