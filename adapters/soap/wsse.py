"""WS-Security UsernameToken (OASIS UsernameToken Profile 1.0), checked before any operation
runs. Username is the system id; PasswordDigest = Base64(SHA-1(nonce + Created + secret)).
Every check failing has its own code (adapters.soap.faults.SoapFault)."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

from lxml import etree

from adapters.soap.faults import SOAP_ENV, SoapFault
from bus.systems import SystemIdentity, SystemRegistry

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
PASSWORD_DIGEST = f"{PROFILE}#PasswordDigest"
PASSWORD_TEXT = f"{PROFILE}#PasswordText"
_TOKEN_PATH = "/Envelope/Header/Security/UsernameToken"
_TOKEN = f"{{{SOAP_ENV}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken"
_USERNAME, _PASSWORD, _NONCE, _CREATED = (f"{{{WSSE}}}Username", f"{{{WSSE}}}Password", f"{{{WSSE}}}Nonce",
                                          f"{{{WSU}}}Created")


@dataclass(frozen=True, slots=True)
class Token:
    username: str
    password: str
    password_type: str
    nonce: str | None
    created: str | None


def read_token(envelope: etree._Element) -> Token:
    token = envelope.find(_TOKEN)
    if token is None:
        raise SoapFault("WSSE_MISSING", "the request needs a wsse:Security header with a UsernameToken "
                        "(username = system id)", path=_TOKEN_PATH)
    parts: dict = {}
    for child in token:  # one pass over the token's few children; the first of a name counts
        parts.setdefault(child.tag, child)
    username, password_el = parts.get(_USERNAME), parts.get(_PASSWORD)
    if username is None or not (username.text or "").strip() or password_el is None or not password_el.text:
        raise SoapFault("WSSE_MALFORMED", "the UsernameToken needs Username and Password", path=_TOKEN_PATH)
    return Token(username.text.strip(), password_el.text.strip(), password_el.get("Type") or PASSWORD_TEXT,
                 _text(parts.get(_NONCE)), _text(parts.get(_CREATED)))


def _text(element) -> str | None:
    return element.text.strip() if element is not None and element.text else None


def digest(nonce: bytes, created: str, secret: str) -> str:
    return base64.b64encode(hashlib.sha1(nonce + created.encode() + secret.encode("utf-8")).digest()).decode()


class Authenticator:
    def __init__(self, registry: SystemRegistry, *, tolerance_seconds: int, allow_password_text: bool):
        self.registry = registry
        self.tolerance = dt.timedelta(seconds=tolerance_seconds)
        self.allow_password_text = allow_password_text

    def authenticate(self, token: Token, *, over_tls: bool, record_nonce: bool = True) -> SystemIdentity:
        """The system the token proves, or SoapFault. With record_nonce=False the caller
        records the nonce itself (a push does, in the same commit as its message)."""
        identity, secret = self.registry.credentials(token.username)
        if identity is None:
            raise SoapFault("SYSTEM_UNKNOWN", f"no system {token.username} is registered",
                            path=f"{_TOKEN_PATH}/Username")
        if not identity.enabled:
            raise SoapFault("SYSTEM_DISABLED", f"system {token.username} is disabled",
                            path=f"{_TOKEN_PATH}/Username")
        if token.password_type == PASSWORD_DIGEST:
            if not token.nonce or not token.created:
                raise SoapFault("WSSE_MALFORMED", "PasswordDigest needs Nonce and wsu:Created", path=_TOKEN_PATH)
            try:
                nonce = base64.b64decode(token.nonce, validate=True)
            except ValueError:
                raise SoapFault("WSSE_MALFORMED", "Nonce is not base64", path=f"{_TOKEN_PATH}/Nonce") from None
            expected = digest(nonce, token.created, secret)
            ok = hmac.compare_digest(expected.encode(), token.password.encode())
        elif token.password_type == PASSWORD_TEXT:
            if not (over_tls or self.allow_password_text):
                raise SoapFault("WSSE_PASSWORD_TEXT_NOT_ALLOWED",
                                "PasswordText sends the secret itself: use PasswordDigest, or TLS",
                                path=f"{_TOKEN_PATH}/Password")
            ok = hmac.compare_digest(token.password.encode("utf-8"), secret.encode("utf-8"))
        else:
            raise SoapFault("WSSE_MALFORMED", f"unknown password type {token.password_type}",
                            path=f"{_TOKEN_PATH}/Password")
        if not ok:
            raise SoapFault("WSSE_BAD_PASSWORD", f"wrong password for system {token.username}",
                            path=f"{_TOKEN_PATH}/Password")
        if token.created is not None:
            self._check_fresh(token.created)
        if record_nonce and token.nonce is not None and not self.registry.use_nonce(token.username, token.nonce):
            raise SoapFault("WSSE_NONCE_REPLAYED", "this nonce was used before: a replayed request",
                            path=f"{_TOKEN_PATH}/Nonce")
        return identity

    def _check_fresh(self, created: str) -> None:
        try:
            when = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            raise SoapFault("WSSE_MALFORMED", f"Created {created!r} is not an ISO 8601 time",
                            path=f"{_TOKEN_PATH}/Created") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)  # the profile's times are UTC
        skew = abs(dt.datetime.now(dt.timezone.utc) - when)
        if skew > self.tolerance:
            raise SoapFault("WSSE_STALE", f"Created {created} is {int(skew.total_seconds())} s from the hub's "
                            f"clock; the window is ±{int(self.tolerance.total_seconds())} s",
                            path=f"{_TOKEN_PATH}/Created")
