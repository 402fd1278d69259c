"""The typed SOAP messages. The case types mirror the canonical case messages field for field
(same names, same order, same enumerations, read from the XSD), so a department's SOAP
toolkit generates proper classes from the WSDL and the hub turns an object into the
canonical body without a mapping table (adapters.soap.canonical)."""
from __future__ import annotations

from functools import lru_cache

from lxml import etree
from spyne import (Array, ComplexModel, Date, DateTime, Decimal, Integer, Unicode, XmlAttribute)

from schemas.hardened import HardenedParser
from schemas.validation import XSD_DIR

NS = "urn:huitong:exchange:1"
_XS = {"xs": "http://www.w3.org/2001/XMLSchema"}


@lru_cache(maxsize=None)
def _xsd(name: str) -> etree._Element:
    return HardenedParser().parse_file(XSD_DIR / name)


def enum(xsd: str, xpath: str, **kw) -> Unicode:
    """A string restricted to the enumeration the canonical XSD declares at `xpath`."""
    values = _xsd(xsd).xpath(f"{xpath}//xs:enumeration/@value", namespaces=_XS)
    assert values, f"no enumeration at {xpath} in {xsd}"
    return Unicode(values=tuple(values), **kw)


def _case_enum(element: str, **kw) -> Unicode:
    return enum("case-1.xsd", f"//xs:element[@name='{element}']", **kw)


Required = {"min_occurs": 1, "nillable": False}


class Model(ComplexModel):
    __namespace__ = NS


class Department(Model):
    _type_info = [("Code", Unicode(**Required)), ("Name", Unicode(**Required))]


class ServiceItemRef(Model):
    _type_info = [("Code", Unicode(**Required)), ("Version", Unicode(**Required)),
                  ("Name", Unicode(**Required))]


class Party(Model):
    _type_info = [("Name", Unicode(**Required)),
                  ("IdType", enum("common-1.xsd", "//xs:simpleType[@name='IdType']")),
                  ("IdNumber", Unicode)]


class Applicant(Party):
    _type_info = [("kind", XmlAttribute(
        enum("case-1.xsd", "//xs:element[@name='Applicant']//xs:attribute[@name='kind']"), use="required"))]


class CaseAccepted(Model):
    """办件基本信息 — the case was accepted (受理)."""
    _type_info = [
        ("CaseNumber", Unicode(**Required)),
        ("RegistrationNumber", Unicode),
        ("RegionCode", Unicode(**Required)),
        ("Department", Department.customize(**Required)),
        ("ServiceItem", ServiceItemRef.customize(**Required)),
        ("CaseType", enum("common-1.xsd", "//xs:simpleType[@name='CaseType']", **Required)),
        ("Applicant", Applicant.customize(**Required)),
        ("Agent", Party),
        ("LegalRepresentative", Party),
        ("ContactPhone", Unicode(**Required)),
        ("Channel", _case_enum("Channel", **Required)),
        ("AppliedAt", DateTime(**Required)),
        ("AcceptedAt", DateTime(**Required)),
        ("PromisedWorkingDays", Integer(**Required)),
        ("PromisedDate", Date(**Required)),
        ("ProjectCode", Unicode),
    ]


class CaseProcess(Model):
    """办件过程信息 — one step of the case's handling."""
    _type_info = [
        ("CaseNumber", Unicode(**Required)),
        ("StepNumber", Integer(**Required)),
        ("StepName", Unicode(**Required)),
        ("Action", _case_enum("Action", **Required)),
        ("SpecialProcedure", _case_enum("SpecialProcedure")),
        ("Handler", Unicode(**Required)),
        ("Opinion", Unicode),
        ("StartedAt", DateTime(**Required)),
        ("EndedAt", DateTime),
        ("NextStep", Unicode),
    ]


class Certificate(Model):
    _type_info = [("Name", Unicode(**Required)), ("Number", Unicode(**Required))]


class CaseResult(Model):
    """办件结果信息 — how the case ended."""
    _type_info = [
        ("CaseNumber", Unicode(**Required)),
        ("Result", _case_enum("Result", **Required)),
        ("AcceptedAt", DateTime),
        ("FinishedAt", DateTime(**Required)),
        ("Handler", Unicode(**Required)),
        ("Description", Unicode),
        ("Certificate", Certificate),
        ("Fee", Decimal),
    ]


class Error(Model):
    _type_info = [("path", Unicode), ("code", Unicode), ("text", Unicode)]


class Receipt(Model):
    """The answer to every push: ACCEPTED only once the exchange log has committed it."""
    _type_info = [("receiptId", Unicode), ("messageId", Unicode),
                  ("status", Unicode(values=("ACCEPTED", "DUPLICATE", "REJECTED"))),
                  ("acceptedAt", DateTime), ("errors", Array(Error))]


class CaseMessage(Model):
    _type_info = [("messageId", Unicode), ("type", Unicode), ("source", Unicode),
                  ("receivedAt", DateTime), ("status", Unicode(values=("LOGGED", "PUBLISHED")))]


class CaseStatus(Model):
    _type_info = [("caseNumber", Unicode), ("messages", Array(CaseMessage))]


CASE_TYPES = {"CaseAccepted": CaseAccepted, "CaseProcess": CaseProcess, "CaseResult": CaseResult}
