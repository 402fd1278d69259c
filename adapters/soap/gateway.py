"""The door of /ws/exchange, in front of spyne: size cap, the hardened parser, WS-Security,
the rate limit. Whatever it refuses is answered with a SOAP fault and logged as a REJECTED
event with its code (X-Road practice: failed and denied requests are evidence too).

It serves two ways with the same checks: as a WSGI app (`huitong serve`, gunicorn), and under
an ASGI server (bus.asgi), where a push is answered in the event loop and waits for its group
commit as a coroutine instead of a thread."""
from __future__ import annotations

import asyncio
from concurrent.futures import Future, wait
from dataclasses import dataclass

from lxml import etree

from adapters.soap.fast_push import PUSHES, canonical_request, receipt_response
from adapters.soap.faults import EXCHANGE_NS, SOAP_ENV, SoapFault, fault_response, server_fault
from adapters.soap.ratelimit import RateLimiter
from adapters.soap.service import OPERATIONS
from adapters.soap.wsse import Authenticator, Token, read_token
from bus.asgi import replayed, respond
from bus.errors import RejectedMessage
from bus.exchange_log import NonceReplayed
from bus.logs import get_logger
from bus.systems import SystemIdentity
from schemas.hardened import HardenedParser, XmlLimits

log = get_logger("huitong.soap")
_BODY = f"{{{SOAP_ENV}}}Body"
_XML = [("Content-Type", "text/xml; charset=utf-8")]
_ASGI_XML = [(b"content-type", b"text/xml; charset=utf-8")]


@dataclass(frozen=True, slots=True)
class _Admitted:
    envelope: etree._Element
    operation: str
    token: Token
    system: SystemIdentity
    fast: bool  # a push the gateway answers itself; otherwise spyne runs the operation


@dataclass(frozen=True, slots=True)
class _Refusal:
    fault: SoapFault
    logged: Future | None  # the REJECTED event's commit (None when it could not be queued)


class SoapGateway:
    def __init__(self, hub, spyne_app, authenticator: Authenticator, limiter: RateLimiter):
        settings = hub.settings
        self.hub = hub
        self.spyne_app = spyne_app
        self.authenticator = authenticator
        self.limiter = limiter
        self.max_bytes = settings.soap.max_request_bytes
        self.fast_push = settings.soap.fast_push
        self.parser = HardenedParser(XmlLimits(max_bytes=self.max_bytes, max_depth=settings.xml.max_depth,
                                               max_elements=settings.xml.max_elements))

    # -- WSGI ------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST":
            return self.spyne_app(environ, start_response)  # ?wsdl, and spyne's answer to the rest
        remote = environ.get("REMOTE_ADDR")
        try:
            data = self._read(environ)
        except SoapFault as fault:
            admitted = self._refuse(fault, None, remote)
        else:
            admitted = self._admit(data, over_tls=environ.get("wsgi.url_scheme") == "https", remote=remote)
        if isinstance(admitted, _Admitted) and not admitted.fast:
            environ["huitong.hub"] = self.hub
            environ["huitong.system"] = admitted.system
            environ["huitong.soap_document"] = admitted.envelope
            return self.spyne_app(environ, start_response)
        if isinstance(admitted, _Admitted):
            try:
                receipt = self.hub.acceptance.accept(**self._push(admitted))
            except Exception as exc:
                admitted = self._push_failed(exc, admitted, remote)
            else:
                body = receipt_response(admitted.operation, receipt)
                start_response("200 OK", [*_XML, ("Content-Length", str(len(body)))])
                return [body]
        if admitted.logged is not None:
            wait([admitted.logged])  # answered once the refusal is in the log
        return fault_response(admitted.fault, start_response)

    # -- ASGI (bus.asgi) -------------------------------------------------------------------
    async def asgi(self, scope, receive, send, fallback) -> None:
        """A push is read, checked and committed here; ?wsdl, the queries, and pushes when
        soap.fast_push is off go to the WSGI app (fallback, in a thread) with the body read."""
        if scope["method"] != "POST" or not self.fast_push:
            return await fallback(scope, receive, send)
        remote = scope["client"][0] if scope.get("client") else None
        try:
            data = await self._read_asgi(scope, receive)
        except SoapFault as fault:
            admitted = self._refuse(fault, None, remote)
        else:
            admitted = self._admit(data, over_tls=scope.get("scheme") == "https", remote=remote, pushes_only=True)
            if admitted is None:  # not a push: nothing recorded yet, spyne answers it
                return await fallback(scope, replayed(data, receive), send)
        if isinstance(admitted, _Admitted):
            try:
                receipt = await self.hub.acceptance.accept_async(**self._push(admitted))
            except Exception as exc:
                admitted = self._push_failed(exc, admitted, remote)
            else:
                return await respond(send, 200, _ASGI_XML, receipt_response(admitted.operation, receipt))
        if admitted.logged is not None:
            await asyncio.wait([asyncio.wrap_future(admitted.logged)])
        await respond(send, 500, _ASGI_XML, admitted.fault.to_xml())

    # -- the checks, shared ----------------------------------------------------------------
    def _admit(self, data: bytes, *, over_tls: bool, remote: str | None,
               pushes_only: bool = False) -> _Admitted | _Refusal | None:
        """Parse, authenticate and rate-limit a request. With pushes_only, any other operation
        is None before its token is looked at, so its nonce is still unused."""
        claimed = None
        try:
            envelope, operation = self._parse(data)
            fast = self.fast_push and operation in PUSHES
            if pushes_only and not fast:
                return None
            token = read_token(envelope)
            claimed = token.username
            # A push records its nonce in the same commit as its message.
            system = self.authenticator.authenticate(token, over_tls=over_tls, record_nonce=not fast)
            if not self.limiter.allow(system.id):
                raise SoapFault("RATE_LIMITED", f"system {system.id} exceeds "
                                f"{self.hub.settings.soap.rate_limit_per_system:g} requests/s; slow down and retry")
        except SoapFault as fault:
            return self._refuse(fault, claimed, remote)
        return _Admitted(envelope, operation, token, system, fast)

    def _push(self, admitted: _Admitted) -> dict:
        """The arguments of Acceptance.accept for a push (raises SoapFault for a malformed one)."""
        system = admitted.system
        return {"data": canonical_request(admitted.envelope.find(_BODY)[0], system.id), "system": system.id,
                "grants": system.grants,
                "nonce": (system.id, admitted.token.nonce) if admitted.token.nonce else None}

    def _push_failed(self, exc: Exception, admitted: _Admitted, remote: str | None) -> _Refusal:
        system = admitted.system.id
        if isinstance(exc, SoapFault):
            return self._refuse(exc, system, remote)
        if isinstance(exc, NonceReplayed):  # the log has its REJECTED event already
            log.warning("soap.refused", code=exc.code, system=system, remote_addr=remote)
            return _Refusal(SoapFault(exc.code, str(exc), path="/Envelope/Header/Security/UsernameToken/Nonce"), None)
        return _Refusal(server_fault(exc, admitted.operation), None)

    def _read(self, environ) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        self._check_size(length)
        stream = environ["wsgi.input"]
        data = stream.read(length if length >= 0 else self.max_bytes + 1)
        self._check_size(len(data), announced=False)
        return data

    async def _read_asgi(self, scope, receive) -> bytes:
        """The body, up to the cap. A larger one is still read to its end (up to 8 times the
        cap) and dropped, so the client is not cut off while sending and reads the fault, as
        it does from waitress, which buffers a body before the app runs."""
        length = next((value for name, value in scope["headers"] if name == b"content-length"), b"")
        announced = int(length) if length.isdigit() else -1
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= self.max_bytes and announced <= self.max_bytes:
                chunks.append(chunk)
            if not message.get("more_body") or size > 8 * self.max_bytes:
                break  # the whole body, the client went away, or enough of a flood
        self._check_size(announced)
        self._check_size(size, announced=False)
        return b"".join(chunks)

    def _check_size(self, length: int, *, announced: bool = True) -> None:
        if length > self.max_bytes:
            raise SoapFault("REQUEST_TOO_LARGE", f"the request is {length} bytes; the cap is {self.max_bytes}"
                            if announced else f"the request exceeds the cap of {self.max_bytes} bytes")

    def _parse(self, data: bytes) -> tuple[etree._Element, str]:
        """The SOAP envelope and the name of the one operation its Body holds."""
        try:
            envelope = self.parser.parse(data)
        except RejectedMessage as rejection:
            error = rejection.errors[0]
            raise SoapFault(error.code, error.text, path=error.path) from None
        body = envelope.find(_BODY) if envelope.tag == f"{{{SOAP_ENV}}}Envelope" else None
        if body is None or len(body) != 1:
            raise SoapFault("SOAP_MALFORMED", "expected a SOAP 1.1 Envelope whose Body holds one operation")
        operation = etree.QName(body[0])
        if operation.namespace != EXCHANGE_NS or operation.localname not in OPERATIONS:
            raise SoapFault("SOAP_MALFORMED", f"no operation {operation.localname} in {operation.namespace}; "
                            f"known: {', '.join(sorted(OPERATIONS))} in {EXCHANGE_NS}",
                            path=f"/Envelope/Body/{operation.localname}")
        return envelope, operation.localname

    def _refuse(self, fault: SoapFault, claimed: str | None, remote: str | None) -> _Refusal:
        """Log a refusal and queue its REJECTED event; the caller answers once it is committed."""
        log.warning("soap.refused", code=fault.code, system=claimed, reason=fault.text, remote_addr=remote)
        try:
            logged = self.hub.log.submit_reject(RejectedMessage.single(fault.code, fault.text, fault.path,
                                                                       source=claimed), source=claimed, body=None)
        except Exception as exc:  # the refusal stands even when the log cannot record it
            log.error("soap.refusal_not_logged", code=fault.code, error=str(exc))
            return _Refusal(fault, None)
        logged.add_done_callback(_complain_unless_logged(fault.code))
        return _Refusal(fault, logged)


def _complain_unless_logged(code: str):
    def check(future: Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("soap.refusal_not_logged", code=code, error=str(future.exception()))
    return check
