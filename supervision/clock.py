"""A case's clock in working days: how many have been used since acceptance, and on which
days it turns yellow and red, given the pauses (补正 supplement requests and 特别程序 special
procedures, whose days are not counted).

Counting is by whole days, as the law counts periods: the day a period starts is not
counted. So the acceptance day is free, a day inside a pause is not counted, the day a
pause ends is not counted either (the clock restarts the next day), and the day a pause
starts still counts (the department worked on it until the request went out).

Colours: red from the day after the deadline (the day the limit's last working day has
passed); yellow from the day on which the used days reach the yellow threshold. With a pause
still open the clock stands: a colour reached before the pause stays, later ones do not come."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from supervision.calendar import WorkingCalendar

GREEN, YELLOW, RED = "GREEN", "YELLOW", "RED"
_ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Yellow when at most yellow_remaining_days remain, or when yellow_used_ratio of the
    limit is used, whichever comes first."""

    yellow_remaining_days: int = 1
    yellow_used_ratio: float = 0.8

    def yellow_at(self, limit: int) -> int:
        """Used working days at which a case of this limit turns yellow."""
        by_remaining = limit - self.yellow_remaining_days
        by_ratio = math.ceil(self.yellow_used_ratio * limit - 1e-9)
        return max(0, min(by_remaining, by_ratio))


@dataclass(frozen=True, slots=True)
class Clock:
    deadline: dt.date | None  # the limit's last working day (None while a pause holds it open)
    yellow_on: dt.date | None  # first yellow day (None: not before the pause, or never)
    red_on: dt.date | None

    def colour(self, today: dt.date) -> str:
        if self.red_on is not None and today >= self.red_on:
            return RED
        if self.yellow_on is not None and today >= self.yellow_on:
            return YELLOW
        return GREEN


Pause = tuple[dt.date, dt.date | None]  # (start day, end day or None while open)


def merged(pauses: list[Pause]) -> list[Pause]:
    """Overlapping pauses as one (a supplement requested during a hearing stops the clock once)."""
    out: list[list] = []
    for start, end in sorted(pauses, key=lambda p: p[0]):
        if out and (out[-1][1] is None or start <= out[-1][1]):
            if out[-1][1] is not None and (end is None or end > out[-1][1]):
                out[-1][1] = end
            continue
        out.append([start, end])
    return [(s, e) for s, e in out]


def counted_segments(accepted: dt.date, pauses: list[Pause]):
    """The stretches (after, until] whose working days count; until None means open-ended."""
    after = accepted
    for start, end in merged(pauses):
        if end is not None and end <= after:
            continue
        if start > after:
            yield after, start
        if end is None:
            return
        after = max(after, end)
    yield after, None


def used_days(calendar: WorkingCalendar, accepted: dt.date, pauses: list[Pause], today: dt.date) -> int:
    total = 0
    for after, until in counted_segments(accepted, pauses):
        if after >= today:
            break
        total += calendar.working_days_after(after, today if until is None else min(until, today))
    return total


def day_reaching(calendar: WorkingCalendar, accepted: dt.date, pauses: list[Pause], n: int) -> dt.date | None:
    """The day on which the n-th counted working day is reached; None if an open pause comes
    first."""
    if n <= 0:
        return accepted
    for after, until in counted_segments(accepted, pauses):
        if until is None:
            return calendar.nth_working_day_after(after, n)
        available = calendar.working_days_after(after, until)
        if available >= n:
            return calendar.nth_working_day_after(after, n)
        n -= available
    return None


def clock(calendar: WorkingCalendar, accepted: dt.date, limit: int, pauses: list[Pause],
          thresholds: Thresholds) -> Clock:
    deadline = day_reaching(calendar, accepted, pauses, limit)
    yellow = day_reaching(calendar, accepted, pauses, thresholds.yellow_at(limit))
    return Clock(deadline, yellow, deadline + _ONE_DAY if deadline is not None else None)
