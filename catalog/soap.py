"""The registries' query operations on the department Web Service endpoint (/ws/exchange):
QueryEnterprise, QueryPerson, QueryProject, QueryServiceItem, SearchEnterprises. The SOAP
adapter finds this service through the `huitong.soap.services` entry point; its gateway has
authenticated the system (WS-Security) before an operation runs, and the system's READ_*
grants decide what it may read, as for the REST API."""
from __future__ import annotations

import datetime as dt
import decimal

from spyne import Array, ComplexModel, Date, DateTime, Decimal, Fault, Integer, Unicode, rpc
from spyne.service import Service

from catalog.queries import CatalogQueries, NotFound, ReadNotGranted, Reader
from catalog.registries import ENTERPRISE, PERSON, PROJECT, SERVICE_ITEM, KeyInvalid, RecordType

NS = "urn:huitong:exchange:1"
Required = {"min_occurs": 1, "nillable": False}


class Model(ComplexModel):
    __namespace__ = NS


class Source(Model):
    """Where a field's current value came from."""
    _type_info = [("field", Unicode), ("system", Unicode), ("messageId", Unicode), ("at", DateTime)]


class CaseRef(Model):
    """One case of a record's application history."""
    _type_info = [("caseNumber", Unicode), ("role", Unicode), ("status", Unicode), ("result", Unicode),
                  ("itemCode", Unicode), ("itemVersion", Unicode), ("itemName", Unicode),
                  ("departmentName", Unicode), ("regionCode", Unicode), ("applicantName", Unicode),
                  ("applicantIdType", Unicode), ("applicantId", Unicode), ("projectCode", Unicode),
                  ("acceptedAt", DateTime), ("finishedAt", DateTime)]


class Qualification(Model):
    _type_info = [("name", Unicode), ("number", Unicode), ("level", Unicode), ("validUntil", Unicode)]


class CreditRecord(Model):
    _type_info = [("kind", Unicode), ("description", Unicode), ("authority", Unicode), ("recordedAt", Unicode)]


class Fee(Model):
    _type_info = [("name", Unicode), ("amount", Unicode)]


class Material(Model):
    _type_info = [("name", Unicode), ("required", Unicode)]


class EnterpriseInfo(Model):
    """企业库: one enterprise's golden record, its sources and application history."""
    _type_info = [("uscc", Unicode), ("name", Unicode), ("legalRepresentative", Unicode),
                  ("legalRepresentativeId", Unicode), ("registeredAt", Date), ("address", Unicode),
                  ("regionCode", Unicode), ("status", Unicode), ("qualifications", Array(Qualification)),
                  ("creditRecords", Array(CreditRecord)), ("sources", Array(Source)), ("cases", Array(CaseRef))]


class PersonInfo(Model):
    """人员库: ids and phones are masked unless the system holds UNMASK."""
    _type_info = [("citizenId", Unicode), ("name", Unicode), ("gender", Unicode), ("birthDate", Date),
                  ("address", Unicode), ("phone", Unicode), ("sources", Array(Source)), ("cases", Array(CaseRef))]


class ProjectInfo(Model):
    """项目库: the project and every approval case of it."""
    _type_info = [("projectCode", Unicode), ("name", Unicode), ("ownerUscc", Unicode), ("regionCode", Unicode),
                  ("totalInvestment", Decimal), ("status", Unicode), ("sources", Array(Source)),
                  ("cases", Array(CaseRef))]


class ServiceItemInfo(Model):
    """事项库: one version of a service item."""
    _type_info = [("code", Unicode), ("version", Unicode), ("name", Unicode), ("departmentCode", Unicode),
                  ("departmentName", Unicode), ("regionCode", Unicode), ("statutoryDays", Integer),
                  ("promisedDays", Integer), ("caseType", Unicode), ("fees", Array(Fee)),
                  ("materials", Array(Material)), ("sources", Array(Source))]


class EnterpriseSummary(Model):
    _type_info = [("uscc", Unicode), ("name", Unicode), ("regionCode", Unicode), ("status", Unicode),
                  ("legalRepresentative", Unicode)]


class EnterpriseSearchResult(Model):
    _type_info = [("items", Array(EnterpriseSummary)), ("next", Unicode)]


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


_ARRAYS = {"qualifications": Qualification, "creditRecords": CreditRecord, "fees": Fee,
           "materials": Material, "cases": CaseRef}
_PARSE = {Date: dt.date.fromisoformat, DateTime: dt.datetime.fromisoformat, Decimal: decimal.Decimal}


def _convert(cls, data: dict):
    """A query answer (snake_case keys, ISO strings) as the spyne model."""
    values = {}
    for name, kind in cls._type_info.items():
        value = data.get(_snake(name))
        if value is None:
            continue
        if name == "sources":
            value = [Source(field=f, system=s["system"], messageId=s["message_id"],
                            at=dt.datetime.fromisoformat(s["at"])) for f, s in value.items()]
        elif name in _ARRAYS:
            value = [_convert(_ARRAYS[name], {k: v if isinstance(v, str) or v is None else str(v)
                                              for k, v in item.items()}) for item in value]
        elif kind in _PARSE:
            value = _PARSE[kind](value)
        values[name] = value
    return cls(**values)


def _queries(ctx) -> tuple[CatalogQueries, Reader]:
    env = ctx.transport.req_env
    hub, system = env["huitong.hub"], env["huitong.system"]
    queries = getattr(hub, "_catalog_queries", None)
    if queries is None:
        queries = hub._catalog_queries = CatalogQueries(
            hub.engine, max_search_results=hub.settings.catalog.max_search_results)
    return queries, Reader(system.id, system.grants)


def _get(ctx, record_type: RecordType, key: str, cls, version: str | None = None):
    queries, reader = _queries(ctx)
    try:
        return _convert(cls, queries.get(reader, record_type, record_type.lookup_key(key, version)))
    except (KeyInvalid, ReadNotGranted, NotFound) as exc:
        raise Fault(f"Client.{exc.code}", str(exc)) from None


class CatalogQueryService(Service):
    @rpc(Unicode(**Required), _returns=EnterpriseInfo)
    def QueryEnterprise(ctx, uscc):
        """企业库: the enterprise with this USCC, with its application history. Needs READ_ENTERPRISE."""
        return _get(ctx, ENTERPRISE, uscc, EnterpriseInfo)

    @rpc(Unicode(**Required), _in_arg_names={"citizen_id": "citizenId"}, _returns=PersonInfo)
    def QueryPerson(ctx, citizen_id):
        """人员库: the person with this citizen id. Needs READ_PERSON; masked without UNMASK."""
        return _get(ctx, PERSON, citizen_id, PersonInfo)

    @rpc(Unicode(**Required), _in_arg_names={"project_code": "projectCode"}, _returns=ProjectInfo)
    def QueryProject(ctx, project_code):
        """项目库: the project with this code and all its approval cases. Needs READ_PROJECT."""
        return _get(ctx, PROJECT, project_code, ProjectInfo)

    @rpc(Unicode(**Required), Unicode, _returns=ServiceItemInfo)
    def QueryServiceItem(ctx, code, version):
        """事项库: the service item with this code (the latest version unless one is given).
        Needs READ_SERVICE_ITEM."""
        return _get(ctx, SERVICE_ITEM, code, ServiceItemInfo, (version or "").strip())

    @rpc(Unicode(**Required), Unicode, Integer, Unicode,
         _in_arg_names={"prefix": "namePrefix", "region": "regionCode"}, _returns=EnterpriseSearchResult)
    def SearchEnterprises(ctx, prefix, region, limit, after):
        """Enterprises whose name starts with namePrefix, optionally within a region (2, 4 or 6
        digits); pass the answer's next as after for the next page. Needs READ_ENTERPRISE."""
        if region and not (region.isdigit() and len(region) in (2, 4, 6)):
            raise Fault("Client.REGION_CODE", f"region {region!r} is not a 2-, 4- or 6-digit region code")
        if not (prefix or "").strip():
            raise Fault("Client.VALUE_INVALID", "give namePrefix, the start of the enterprise name")
        queries, reader = _queries(ctx)
        try:
            found = queries.search_enterprises(reader, prefix, region=region or None, limit=limit or 20,
                                               after=after or None)
        except ReadNotGranted as exc:
            raise Fault(f"Client.{exc.code}", str(exc)) from None
        return EnterpriseSearchResult(items=[_convert(EnterpriseSummary, item) for item in found["items"]],
                                      next=found["next"])
