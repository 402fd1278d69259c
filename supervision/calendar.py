"""The working calendar: which days count towards a case's time limit. Weekends are off,
public holidays are off, and the adjusted working days (调休, a Saturday or Sunday worked to
make a long holiday) are on. The State Council publishes each year's arrangement; a
deployment keeps it in a YAML file:

    years:
      2026:
        holidays: [2026-01-01, 2026-10-01..2026-10-07]
        workdays: [2026-09-20, 2026-10-10]

Counting is the hot path of supervision (a million open cases are recoloured at once), so
the calendar is a table of running working-day counts: counting the working days between two
dates is two look-ups, and finding the n-th working day after a date is one bisection."""
from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import yaml

from bus.errors import ConfigError

FIRST_DAY = dt.date(2000, 1, 1)
LAST_DAY = dt.date(2099, 12, 31)


class CalendarInvalid(ConfigError):
    code = "CALENDAR_INVALID"


@dataclass(frozen=True)
class WorkingCalendar:
    holidays: frozenset[dt.date] = frozenset()
    workdays: frozenset[dt.date] = frozenset()  # adjusted working weekend days
    years: frozenset[int] = frozenset()  # years the file declares (others: weekends only)

    def __post_init__(self):
        # _running[i]: working days in [FIRST_DAY, FIRST_DAY + i days)
        running, total = [0], 0
        day = FIRST_DAY
        one = dt.timedelta(days=1)
        while day <= LAST_DAY:
            total += self._works(day)
            running.append(total)
            day += one
        object.__setattr__(self, "_running", running)

    def _works(self, day: dt.date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def is_working_day(self, day: dt.date) -> bool:
        return self._works(day)

    def _index(self, day: dt.date) -> int:
        if not FIRST_DAY <= day <= LAST_DAY:
            raise CalendarInvalid(f"{day} is outside the calendar ({FIRST_DAY} to {LAST_DAY})")
        return (day - FIRST_DAY).days

    def working_days_after(self, start: dt.date, end: dt.date) -> int:
        """Working days d with start < d <= end (the day a period starts is not counted)."""
        if end <= start:
            return 0
        return self._running[self._index(end) + 1] - self._running[self._index(start) + 1]

    def nth_working_day_after(self, start: dt.date, n: int) -> dt.date:
        """The day on which n working days after start have passed (start itself for n = 0)."""
        if n <= 0:
            return start
        target = self._running[self._index(start) + 1] + n
        i = bisect.bisect_left(self._running, target)
        if i >= len(self._running):
            raise CalendarInvalid(f"{n} working days after {start} is beyond {LAST_DAY}")
        return FIRST_DAY + dt.timedelta(days=i - 1)

    def covers(self, day: dt.date) -> bool:
        """Whether the file declared the year of this day (a deployment should warn if not)."""
        return day.year in self.years


def load_calendar(path: str | Path | None) -> WorkingCalendar:
    """A calendar from its YAML file; no file: weekends only (and a warning at start)."""
    if not path:
        return WorkingCalendar()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise CalendarInvalid(f"calendar {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise CalendarInvalid(f"calendar {path}: not YAML: {exc}") from None
    return parse_calendar(data, str(path))


def parse_calendar(data: dict, where: str = "calendar") -> WorkingCalendar:
    if not isinstance(data, dict) or set(data) - {"years", "description"} or not isinstance(data.get("years"), dict):
        raise CalendarInvalid(f"{where}: expected a mapping with 'years' (and an optional 'description')")
    holidays: set[dt.date] = set()
    workdays: set[dt.date] = set()
    for year, entry in data["years"].items():
        year = int(year) if isinstance(year, str) and year.isdigit() else year
        if not isinstance(year, int) or not FIRST_DAY.year <= year <= LAST_DAY.year:
            raise CalendarInvalid(f"{where}: {year!r} is not a year between {FIRST_DAY.year} and {LAST_DAY.year}")
        entry = entry or {}
        unknown = set(entry) - {"holidays", "workdays"}
        if unknown:
            raise CalendarInvalid(f"{where}: year {year}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                                  f"expected holidays and workdays")
        for day in _days(entry.get("holidays") or [], f"{where}: year {year}: holidays"):
            holidays.add(_in_year(day, year, where))
        for day in _days(entry.get("workdays") or [], f"{where}: year {year}: workdays"):
            if day.weekday() < 5:
                raise CalendarInvalid(f"{where}: year {year}: workday {day} is a weekday already")
            workdays.add(_in_year(day, year, where))
    both = holidays & workdays
    if both:
        raise CalendarInvalid(f"{where}: {min(both)} is both a holiday and a working day")
    return WorkingCalendar(frozenset(holidays), frozenset(workdays), frozenset(int(y) for y in data["years"]))


def _days(items, where: str):
    """Dates, and ranges written FIRST..LAST."""
    if not isinstance(items, list):
        raise CalendarInvalid(f"{where}: expected a list of dates")
    for item in items:
        if isinstance(item, dt.date):
            yield item
            continue
        text = str(item)
        first, _, last = text.partition("..")
        try:
            start = dt.date.fromisoformat(first.strip())
            end = dt.date.fromisoformat(last.strip()) if last else start
        except ValueError:
            raise CalendarInvalid(f"{where}: {text!r} is not a date (YYYY-MM-DD) or range (YYYY-MM-DD..YYYY-MM-DD)") from None
        if end < start:
            raise CalendarInvalid(f"{where}: range {text!r} ends before it starts")
        while start <= end:
            yield start
            start += dt.timedelta(days=1)


def _in_year(day: dt.date, year: int, where: str) -> dt.date:
    if day.year != year:
        raise CalendarInvalid(f"{where}: {day} is listed under year {year}")
    return day
