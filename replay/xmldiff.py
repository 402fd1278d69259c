"""Field-level difference of two XML documents, for a replay's dry run: which fields a changed
route or transform would send differently. A field is an element's text or an attribute,
named by its path of local names (a repeated sibling numbered from 1)."""
from __future__ import annotations

from lxml import etree

from schemas.hardened import HardenedParser


def fields(data: bytes, parser: HardenedParser) -> dict[str, str]:
    root = parser.parse(data)
    out: dict[str, str] = {}

    def walk(element, path: str) -> None:
        for name, value in sorted(element.attrib.items()):
            out[f"{path}/@{etree.QName(name).localname}"] = value
        children = [c for c in element if isinstance(c.tag, str)]
        text = (element.text or "").strip()
        if text or not children:
            out[path] = text
        counts: dict[str, int] = {}
        for child in children:
            name = etree.QName(child).localname
            counts[name] = counts.get(name, 0) + 1
        seen: dict[str, int] = {}
        for child in children:
            name = etree.QName(child).localname
            seen[name] = seen.get(name, 0) + 1
            walk(child, f"{path}/{name}" + (f"[{seen[name]}]" if counts[name] > 1 else ""))

    walk(root, "/" + etree.QName(root).localname)
    return out


def changed_fields(then: bytes, now: bytes, parser: HardenedParser) -> list[dict]:
    """[{field, then, now}] in document order of the newer output, then fields that went away.
    Two outputs that are not XML compare as a whole."""
    try:
        before, after = fields(then, parser), fields(now, parser)
    except Exception:
        return [] if then == now else [{"field": "(whole payload)", "then": f"{len(then)} bytes",
                                        "now": f"{len(now)} bytes"}]
    changes = [{"field": path, "then": before.get(path), "now": value}
               for path, value in after.items() if before.get(path) != value]
    changes += [{"field": path, "then": value, "now": None} for path, value in before.items() if path not in after]
    return changes
