"""PIPL masking: citizen ids and phone numbers never reach a log line or a screen whole."""
from __future__ import annotations

import re

# 18-character citizen ids and 11-digit mainland mobiles standing on their own: not inside a
# longer run of letters and digits, such as a SHA-256 hex digest (one in fifty holds eleven
# digits that look like a mobile, and a masked digest no longer matches its body).
_CITIZEN_ID = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dX])(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<![0-9A-Za-z])(1[3-9]\d)\d{4}(\d{4})(?![0-9A-Za-z])")
_LANDLINE = re.compile(r"(?<![0-9A-Za-z])(0\d{2,3}-)\d{3,4}(\d{4})(?![0-9A-Za-z])")


def mask_text(text: str) -> str:
    """320382199207040242 -> 320382********0242; 13852161234 -> 138****1234."""
    if not any(ch.isdigit() for ch in text):
        return text
    text = _CITIZEN_ID.sub(r"\1********\2", text)
    text = _MOBILE.sub(r"\1****\2", text)
    return _LANDLINE.sub(r"\1****\2", text)


def mask_value(value):
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_value(v) for v in value)
    return value
