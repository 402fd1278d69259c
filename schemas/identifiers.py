"""Checks for the identifiers the hub keys on: USCC, organisation code, citizen id,
region code, project code. Pure functions; each returns None when the value is good,
else a (code, text) pair naming what is wrong."""
from __future__ import annotations

import datetime as dt
import re
import time

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100-2015: no I, O, S, V, Z
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
CITIZEN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CITIZEN_CHECKS = "10X98765432"

# GB/T 2260 province-level prefixes; the full county table changes yearly, so only the
# province part and the code's internal structure are checked.
PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 "
    "50 51 52 53 54 61 62 63 64 65 71 81 82".split()
)

_USCC_VALUE = {ch: i for i, ch in enumerate(USCC_ALPHABET)}
_ORG_VALUE = {ch: i for i, ch in enumerate(ORG_ALPHABET)}
_USCC_RE = re.compile(r"[0-9ABCDEFGHJKLMNPQRTUWXY]{18}")
_CITIZEN_RE = re.compile(r"\d{17}[\dX]")
_PROJECT_RE = re.compile(r"(\d{4})-(\d{6})-(\d{2})-(\d{2})-(\d{6})")

Problem = tuple[str, str] | None


# Per position, each character's value times that position's weight: one lookup per character
# (a bulk import checks a million USCCs).
_USCC_TERMS = [{ch: value * weight for ch, value in _USCC_VALUE.items()} for weight in USCC_WEIGHTS]
_ORG_TERMS = [{ch: value * weight for ch, value in _ORG_VALUE.items()} for weight in ORG_WEIGHTS]


def uscc_check_char(first17: str) -> str:
    total = sum(map(dict.__getitem__, _USCC_TERMS, first17))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def org_code_check_char(first8: str) -> str:
    total = sum(map(dict.__getitem__, _ORG_TERMS, first8))
    c = 11 - total % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def citizen_check_char(first17: str) -> str:
    return CITIZEN_CHECKS[sum(map(int.__mul__, map(int, first17), CITIZEN_WEIGHTS)) % 11]


def check_region(code: str) -> Problem:
    if len(code) != 6 or not code.isdigit():
        return "REGION_CODE", f"region code {code!r} is not 6 digits"
    if code[:2] not in PROVINCES:
        return "REGION_CODE", f"region code {code} has no province {code[:2]}"
    if code[2:4] == "00" and code[4:] != "00":
        return "REGION_CODE", f"region code {code} names a county under no city"
    return None


def check_uscc(value: str) -> Problem:
    if not _USCC_RE.fullmatch(value):
        return "USCC_FORMAT", (
            f"USCC {value!r} must be 18 characters of {USCC_ALPHABET}")
    expected = uscc_check_char(value[:17])
    if value[17] != expected:
        return "USCC_CHECK", f"USCC check character is {value[17]}, expected {expected}"
    org = value[8:17]
    expected_org = org_code_check_char(org[:8])
    if org[8] != expected_org:
        return "ORG_CODE_CHECK", (
            f"organisation code check character is {org[8]}, expected {expected_org}")
    return None


def citizen_birth_date(value: str) -> dt.date | None:
    try:
        return dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return None


def citizen_gender(value: str) -> str:
    """MALE or FEMALE, from the parity of the sequence number."""
    return "MALE" if int(value[16]) % 2 else "FEMALE"


_today_cache: tuple[int, dt.date] = (-1, dt.date.min)


def _today() -> dt.date:
    # date.today() costs a localtime() call; every message checks ids, so ask once a minute.
    global _today_cache
    minute = int(time.time() // 60)
    if _today_cache[0] != minute:
        _today_cache = (minute, dt.date.today())
    return _today_cache[1]


def check_citizen_id(value: str, today: dt.date | None = None) -> Problem:
    if not _CITIZEN_RE.fullmatch(value):
        return "CITIZEN_ID_FORMAT", "citizen id must be 17 digits and a digit or X"
    born = citizen_birth_date(value)
    today = today or _today()
    if born is None or born > today or born.year < 1850:
        return "CITIZEN_ID_BIRTHDATE", f"citizen id carries no valid birth date ({value[6:14]})"
    expected = citizen_check_char(value[:17])
    if value[17] != expected:
        return "CITIZEN_ID_CHECK", f"citizen id check digit is {value[17]}, expected {expected}"
    return None


def check_project_code(value: str, today: dt.date | None = None) -> Problem:
    match = _PROJECT_RE.fullmatch(value)
    if not match:
        return "PROJECT_CODE", f"project code {value!r} is not YYYY-RRRRRR-DD-TT-NNNNNN"
    year = int(match.group(1))
    today = today or _today()
    if not 2000 <= year <= today.year:
        return "PROJECT_CODE", f"project code year {year} is not between 2000 and {today.year}"
    region_problem = check_region(match.group(2))
    if region_problem:
        return "PROJECT_CODE", f"project code region: {region_problem[1]}"
    # GB/T 40058-2021's serial check algorithm is not public; format, year and region only.
    return None
