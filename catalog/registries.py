"""The four registries as data: their keys and fields, how each field is checked, shown
(masked or not) and named in a CSV file. Merging, importing, exporting and querying all
read these declarations, so a field is added in one place."""
from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass
from typing import Any, Callable

from bus.errors import HuitongError
from schemas import identifiers as ids

from catalog.models import Enterprise, GoldenRecord, Person, Project, ServiceItem

Problem = tuple[str, str] | None


class KeyInvalid(HuitongError):
    """A looked-up key is not a valid identifier; the code is the identifier check's."""

    code = "KEY_MISSING"


def _enum(*choices: str) -> Callable[[str], Problem]:
    def check(value: str) -> Problem:
        return None if value in choices else ("VALUE_INVALID", f"{value!r} is not one of {', '.join(choices)}")
    return check


def _phone(value: str) -> Problem:
    digits = value.replace("-", "")
    if digits.isdigit() and 7 <= len(digits) <= 13:
        return None
    return "PHONE_FORMAT", f"phone {value!r} is not a phone number"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: str = "text"  # text | date | int | decimal | list
    check: Callable[[str], Problem] | None = None
    personal: bool = False  # a citizen id or a phone: masked unless the reader may unmask
    headers: tuple[str, ...] = ()  # other CSV header names (the Chinese ones departments use)
    required: bool = False  # an imported row must have it

    # -- plain values: what sources, history, conflicts and JSON answers hold ------------------
    def plain(self, value: Any) -> Any:
        if value is None:
            return None
        if self.kind == "date":
            return value.isoformat()
        if self.kind == "decimal":
            text = format(decimal.Decimal(value).normalize(), "f")
            return text
        return value

    def column(self, value: Any) -> Any:
        """A plain value as the model's column takes it."""
        if value is None:
            return None
        if self.kind == "date":
            return dt.date.fromisoformat(value)
        if self.kind == "decimal":
            return decimal.Decimal(value)
        return value

    def parse(self, text: str) -> tuple[Any, Problem]:
        """A CSV cell as a plain value, or the problem with it."""
        text = text.strip()
        if not text:
            return None, None
        if self.kind == "text" and self.check is None:
            return text, None
        if self.check:
            problem = self.check(text)
            if problem:
                return None, problem
        if self.kind == "date":
            try:
                return dt.date.fromisoformat(text.replace("/", "-")).isoformat(), None
            except ValueError:
                return None, ("DATE_FORMAT", f"{text!r} is not a date (YYYY-MM-DD)")
        if self.kind == "int":
            if not text.isdigit():
                return None, ("NUMBER_FORMAT", f"{text!r} is not a whole number")
            return int(text), None
        if self.kind == "decimal":
            try:
                number = decimal.Decimal(text)
            except decimal.InvalidOperation:
                return None, ("NUMBER_FORMAT", f"{text!r} is not a number")
            if not number.is_finite() or number < 0:
                return None, ("NUMBER_FORMAT", f"{text!r} is not an amount")
            return self.plain(number), None
        if self.kind == "list":
            return None, ("VALUE_INVALID", "lists are not imported from CSV")
        return text, None


@dataclass(frozen=True, slots=True)
class RecordType:
    name: str  # enterprise, person, project, service_item
    plural: str  # as the CLI and the REST paths say it
    model: type[GoldenRecord]
    keys: tuple[Field, ...]
    fields: tuple[Field, ...]
    read_grant: str  # the system grant that lets a system read it
    title: str

    @property
    def all_fields(self) -> tuple[Field, ...]:
        return self.keys + self.fields

    def field(self, name: str) -> Field:
        return next(f for f in self.all_fields if f.name == name)

    def key_text(self, key: tuple[str, ...]) -> str:
        """The key as one string (history, conflicts, links): `code@version` for items."""
        return "@".join(key)

    def key_of(self, text: str) -> tuple[str, ...]:
        parts = tuple(text.split("@")) if len(self.keys) > 1 else (text,)
        if len(parts) != len(self.keys):
            raise ValueError(f"a {self.name} key is {'@'.join(f.name for f in self.keys)}")
        return parts

    def lookup_key(self, key: str, version: str | None = None) -> tuple[str, ...]:
        """A key as a caller gives it (URL, SOAP argument, command line), checked as a message's
        would be; a service item without a version means its latest (an empty version)."""
        key = key.strip()
        problem = self.check_key((key, version) if version else (key,))
        if problem:
            raise KeyInvalid(problem[1], code=problem[0])
        return (key, version or "") if len(self.keys) > 1 else (key,)

    def check_key(self, key: tuple[str, ...]) -> Problem:
        for field, value in zip(self.keys, key):
            if not value:
                return "KEY_MISSING", f"{field.name} is empty"
            if field.check:
                problem = field.check(value)
                if problem:
                    return problem
        return None


def _citizen_id(value: str) -> Problem:
    return ids.check_citizen_id(value)


def _project_code(value: str) -> Problem:
    return ids.check_project_code(value)


def _party_id(value: str) -> Problem:
    # A legal representative's id is mostly a citizen id; other documents are taken as given.
    return ids.check_citizen_id(value) if len(value) == 18 and value[:17].isdigit() else None


ENTERPRISE = RecordType(
    "enterprise", "enterprises", Enterprise, read_grant="READ_ENTERPRISE", title="企业库 enterprise",
    keys=(Field("uscc", check=ids.check_uscc, headers=("统一社会信用代码", "USCC")),),
    fields=(
        Field("name", required=True, headers=("企业名称", "名称")),
        Field("legal_representative", headers=("法定代表人",)),
        Field("legal_representative_id", check=_party_id, personal=True, headers=("法定代表人证件号码",)),
        Field("registered_at", "date", headers=("成立日期",)),
        Field("address", headers=("住所", "地址")),
        Field("region_code", check=ids.check_region, headers=("行政区划", "行政区划代码")),
        Field("status", check=_enum("ACTIVE", "SUSPENDED", "REVOKED", "CANCELLED"), headers=("登记状态",)),
        Field("qualifications", "list"),
        Field("credit_records", "list"),
    ))

PERSON = RecordType(
    "person", "persons", Person, read_grant="READ_PERSON", title="人员库 person",
    keys=(Field("citizen_id", check=_citizen_id, personal=True, headers=("公民身份号码", "身份证号")),),
    fields=(
        Field("name", required=True, headers=("姓名",)),
        Field("gender", check=_enum("MALE", "FEMALE"), headers=("性别",)),
        Field("birth_date", "date", headers=("出生日期",)),
        Field("address", headers=("住址", "地址")),
        Field("phone", check=_phone, personal=True, headers=("联系电话", "手机号码")),
    ))

PROJECT = RecordType(
    "project", "projects", Project, read_grant="READ_PROJECT", title="项目库 project",
    keys=(Field("project_code", check=_project_code, headers=("项目代码", "投资项目统一代码")),),
    fields=(
        Field("name", required=True, headers=("项目名称",)),
        Field("owner_uscc", check=ids.check_uscc, headers=("项目单位统一社会信用代码", "项目法人")),
        Field("region_code", check=ids.check_region, headers=("建设地点", "行政区划")),
        Field("total_investment", "decimal", headers=("总投资", "总投资（万元）")),
        Field("status", check=_enum("PROPOSED", "APPROVED", "UNDER_CONSTRUCTION", "COMPLETED", "CANCELLED"),
              headers=("项目状态",)),
    ))

SERVICE_ITEM = RecordType(
    "service_item", "items", ServiceItem, read_grant="READ_SERVICE_ITEM", title="事项库 service item",
    keys=(Field("code", headers=("事项编码",)), Field("version", headers=("版本号", "事项版本"))),
    fields=(
        Field("name", required=True, headers=("事项名称",)),
        Field("department_code", headers=("实施部门编码",)),
        Field("department_name", headers=("实施部门",)),
        Field("region_code", check=ids.check_region, headers=("行政区划",)),
        Field("statutory_days", "int", headers=("法定时限",)),
        Field("promised_days", "int", headers=("承诺时限",)),
        Field("case_type", check=_enum("IMMEDIATE", "PROMISED", "SUPPLEMENT", "REPORT_UP", "JOINT"),
              headers=("办件类型",)),
        Field("fees", "list"),
        Field("materials", "list"),
    ))

RECORD_TYPES: dict[str, RecordType] = {t.name: t for t in (ENTERPRISE, PERSON, PROJECT, SERVICE_ITEM)}
BY_PLURAL: dict[str, RecordType] = {t.plural: t for t in RECORD_TYPES.values()}
