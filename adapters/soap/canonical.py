"""Typed SOAP objects to canonical XML. The SOAP types carry the canonical names in the
canonical order, so this is a walk, not a mapping: each set field becomes the element of the
same name in the family's namespace; XmlAttribute fields become attributes."""
from __future__ import annotations

import datetime as dt
import decimal

from lxml import etree
from spyne import ComplexModelBase, XmlAttribute

from schemas.namespaces import CASE


def to_canonical(obj: ComplexModelBase, tag: str, namespace: str = CASE) -> etree._Element:
    element = etree.Element(f"{{{namespace}}}{tag}", nsmap={"m": namespace})
    _fill(element, obj, namespace)
    return element


def _fill(element: etree._Element, obj: ComplexModelBase, namespace: str) -> None:
    for name, field_type in type(obj).get_flat_type_info(type(obj)).items():
        value = getattr(obj, name, None)
        if value is None:
            continue
        if isinstance(field_type, type) and issubclass(field_type, XmlAttribute):
            element.set(name, _text(value))
        elif isinstance(value, ComplexModelBase):
            _fill(etree.SubElement(element, f"{{{namespace}}}{name}"), value, namespace)
        else:
            etree.SubElement(element, f"{{{namespace}}}{name}").text = _text(value)


def _text(value) -> str:
    if isinstance(value, dt.datetime):
        # A time without a zone stays without one, and the canonical XSD says so to the sender.
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    return str(value)
