"""Readable element paths for error reports: /Envelope/Body/CaseAccepted/Applicant/IdNumber,
local names only, with [n] where siblings share a name."""
from __future__ import annotations

from lxml import etree


def path_of(el: etree._Element) -> str:
    parts = []
    while el is not None:
        name = etree.QName(el).localname
        parent = el.getparent()
        if parent is not None:
            same = [s for s in parent.iterchildren(el.tag)]
            if len(same) > 1:
                name += f"[{same.index(el) + 1}]"
        parts.append(name)
        el = parent
    return "/" + "/".join(reversed(parts))


def strip_prefixes(path: str) -> str:
    """xmlschema paths carry prefixes (/hx:Envelope/c:CaseAccepted); ours do not."""
    parts = []
    for part in path.split("/"):
        parts.append(part.rsplit("}", 1)[-1] if "}" in part else part.split(":", 1)[-1])
    return "/".join(parts)
