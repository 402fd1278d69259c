"""The one error tree of Huitong. Every rejection and failure carries a stable code that
senders, operators and tests can rely on; the texts may improve, the codes do not change."""
from __future__ import annotations

from dataclasses import dataclass

# Stable codes with what they mean. Adding a code is fine; renaming one breaks senders.
CODES: dict[str, str] = {
    # hostile or broken XML
    "XML_TOO_LARGE": "the document is larger than the configured byte cap",
    "XML_TOO_DEEP": "elements are nested deeper than the configured cap",
    "XML_TOO_MANY_ELEMENTS": "the document has more elements than the configured cap",
    "XML_DOCTYPE_FORBIDDEN": "a DOCTYPE (DTD, entities) is never accepted",
    "XML_XINCLUDE_FORBIDDEN": "XInclude is never processed",
    "XML_MALFORMED": "the bytes are not well-formed XML",
    # shape
    "XSD_INVALID": "the message does not match its XSD",
    "UNKNOWN_TYPE": "the message type is not one the hub knows",
    "TYPE_MISMATCH": "the header type does not name the body element",
    "SCHEMA_VERSION": "the schema version is not supported",
    # identifiers and dates
    "USCC_FORMAT": "not 18 characters of the USCC alphabet",
    "USCC_CHECK": "USCC check character is wrong",
    "ORG_CODE_CHECK": "organisation-code check character (USCC positions 9-17) is wrong",
    "CITIZEN_ID_FORMAT": "citizen id is not 17 digits and a check digit",
    "CITIZEN_ID_CHECK": "citizen id check digit is wrong",
    "CITIZEN_ID_BIRTHDATE": "citizen id birth date is impossible or disagrees with the record",
    "GENDER_MISMATCH": "gender disagrees with the citizen id",
    "REGION_CODE": "not a GB/T 2260 region code",
    "PROJECT_CODE": "project code format, year or region is wrong",
    "TIME_ORDER": "timestamps are out of order",
    "DAYS_ORDER": "promised working days exceed the statutory limit",
    # acceptance
    "SOURCE_MISMATCH": "the envelope's source is not the authenticated system",
    "MESSAGE_ID_REUSED": "the message id was already used for different content",
    "DUPLICATE": "the message id was already accepted (not an error for the sender)",
    "NOT_AUTHORIZED": "the system may not send this message type",
    # the department Web Service interface (SOAP faults Client.<CODE> / Server.<CODE>)
    "SOAP_MALFORMED": "the request is not a SOAP 1.1 envelope with one known operation",
    "REQUEST_TOO_LARGE": "the SOAP request is larger than soap.max_request_bytes",
    "WSSE_MISSING": "the request carries no WS-Security UsernameToken",
    "WSSE_MALFORMED": "the UsernameToken lacks a part the password type needs",
    "WSSE_BAD_PASSWORD": "the password or password digest is wrong",
    "WSSE_PASSWORD_TEXT_NOT_ALLOWED": "PasswordText is accepted only over TLS",
    "WSSE_STALE": "Created lies outside the freshness window",
    "WSSE_NONCE_REPLAYED": "the nonce was used before (a replayed request)",
    "SYSTEM_UNKNOWN": "no system with this id is registered",
    "SYSTEM_DISABLED": "the system is registered but disabled",
    "RATE_LIMITED": "the system sends faster than its rate limit",
    "NOT_FOUND": "nothing is known under this id",
    "INTERNAL": "the hub failed; the fault names a reference to find it in the log",
    # routes and delivery
    "ROUTES_INVALID": "a route file is wrong (unknown key, missing destination, XPath or XSLT that does not compile)",
    "DELIVERY_FAILED": "a destination did not take the message; it is retried",
    "DESTINATION_TIMEOUT": "a destination did not answer in time; it is retried",
    "DESTINATION_FAULT": "a department system answered with a SOAP fault; it is retried",
    "TRANSFORM_FAILED": "the route's transform failed on this message; retrying cannot help",
    "DEAD_LETTERED": "every attempt failed; the message waits in the route's dead-letter queue",
    # file drops and front databases
    "ENCODING": "bytes are not valid in the declared encoding (never guessed, never mojibake)",
    "RECORD_MAPPING": "a record's value cannot be mapped to its canonical field",
    "CSV_MALFORMED": "the CSV cannot be read (a mapped column is missing, broken quoting)",
    "FILE_REFUSED": "not a regular file inside the inbox (symlink, FIFO, device, path outside)",
    "FILE_TOO_LARGE": "the file is larger than the inbox's max_file_bytes",
    "COMPRESSED_NOT_ALLOWED": "a compressed file in an inbox that does not take them",
    "DECOMPRESSED_TOO_LARGE": "decompressing would pass max_decompressed_bytes (a bomb, or too big)",
    "FILE_CHECKSUM": "the file does not match its .sha256 sidecar",
    "FILE_FORMAT": "the file is not in the inbox's format",
    "FRONTDB_UNAVAILABLE": "the front database cannot be read or written",
    # the shared registries (catalog)
    "READ_NOT_GRANTED": "the caller may not read this registry (grants READ_ENTERPRISE, READ_PERSON, ...)",
    "UNAUTHENTICATED": "the request carries no valid credentials of a registered, enabled system",
    "CATALOG_UNSUPPORTED": "the catalog takes registry and case messages only",
    "KEY_MISSING": "a record's key (USCC, citizen id, project code, item code and version) is empty",
    "FIELD_REQUIRED": "a field a new record needs is empty",
    "VALUE_INVALID": "a value is not one of the allowed ones",
    "DATE_FORMAT": "not a date (YYYY-MM-DD)",
    "NUMBER_FORMAT": "not a number, or not a non-negative amount",
    "PHONE_FORMAT": "not a phone number",
    # console
    "LOGIN_FAILED": "the user name or password is wrong, or the user is disabled",
    "LOGIN_LOCKED": "too many failed sign-ins of this user; try again later",
    "SESSION_EXPIRED": "the console session ended (idle too long, or signed out)",
    "FORBIDDEN": "the signed-in user's role may not do this",
    "CSRF_FAILED": "the form's CSRF token is missing or wrong (a forged or stale request)",
    "ALREADY_EXISTS": "something with this name exists already",
    # runtime
    "CONFIG_INVALID": "the configuration is wrong",
    "SCHEMA_OUTDATED": "the database schema is older than this release",
    "STORE_UNAVAILABLE": "the exchange log cannot be written",
    "BROKER_UNAVAILABLE": "the broker cannot be reached or did not confirm",
}


@dataclass(frozen=True, slots=True)
class FieldError:
    """One thing wrong with a message: where (a path of local names), what (code), why."""

    path: str
    code: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} at {self.path}: {self.text}"


class HuitongError(Exception):
    code = "HUITONG_ERROR"

    def __init__(self, text: str, *, code: str | None = None):
        super().__init__(text)
        if code:
            self.code = code


class ConfigError(HuitongError):
    code = "CONFIG_INVALID"


class SchemaOutdated(HuitongError):
    code = "SCHEMA_OUTDATED"


class StoreUnavailable(HuitongError):
    code = "STORE_UNAVAILABLE"


class BrokerUnavailable(HuitongError):
    code = "BROKER_UNAVAILABLE"


class RoutesInvalid(ConfigError):
    """Route files that must not run. Carries every problem, each with file and line."""

    code = "ROUTES_INVALID"

    def __init__(self, problems: list):
        self.problems = list(problems)
        super().__init__("\n".join(map(str, self.problems)))


class DeliveryError(HuitongError):
    """A destination did not take a message. permanent: retrying cannot help (a transform
    that fails on this message), so it is dead-lettered at once."""

    code = "DELIVERY_FAILED"

    def __init__(self, text: str, *, code: str | None = None, permanent: bool = False):
        super().__init__(text, code=code)
        self.permanent = permanent


class RejectedMessage(HuitongError):
    """A message refused at the door. Carries every problem found, first one first."""

    def __init__(self, errors: list[FieldError] | tuple[FieldError, ...],
                 *, message_id: str | None = None, source: str | None = None):
        self.errors = tuple(errors)
        self.message_id = message_id
        self.source = source
        super().__init__("; ".join(map(str, self.errors)), code=self.errors[0].code)

    @classmethod
    def single(cls, code: str, text: str, path: str = "/", **kw) -> "RejectedMessage":
        return cls([FieldError(path, code, text)], **kw)
