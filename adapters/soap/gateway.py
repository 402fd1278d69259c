"""The door of /ws/exchange, in front of spyne: size cap, the hardened parser, WS-Security,
the rate limit. Whatever it refuses is answered with a SOAP fault and logged as a REJECTED
event with its code (X-Road practice: failed and denied requests are evidence too)."""
from __future__ import annotations

from lxml import etree

from adapters.soap.fast_push import PUSHES, canonical_request, receipt_response
from adapters.soap.faults import EXCHANGE_NS, SOAP_ENV, SoapFault, fault_response, server_fault
from adapters.soap.ratelimit import RateLimiter
from adapters.soap.service import OPERATIONS
from adapters.soap.wsse import Authenticator, read_token
from bus.errors import RejectedMessage
from bus.exchange_log import NonceReplayed
from bus.logs import get_logger
from schemas.hardened import HardenedParser, XmlLimits

log = get_logger("huitong.soap")
_BODY = f"{{{SOAP_ENV}}}Body"


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

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST":
            return self.spyne_app(environ, start_response)  # ?wsdl, and spyne's answer to the rest
        claimed = None
        try:
            data = self._read(environ)
            envelope, operation = self._parse(data)
            fast = self.fast_push and operation in PUSHES
            token = read_token(envelope)
            claimed = token.username
            system = self.authenticator.authenticate(token, over_tls=environ.get("wsgi.url_scheme") == "https",
                                                     record_nonce=not fast)
            if not self.limiter.allow(system.id):
                raise SoapFault("RATE_LIMITED", f"system {system.id} exceeds "
                                f"{self.hub.settings.soap.rate_limit_per_system:g} requests/s; slow down and retry")
        except SoapFault as fault:
            self._log_refusal(fault, claimed, environ)
            return fault_response(fault, start_response)
        if fast:
            return self._push(envelope.find(_BODY)[0], operation, system,
                              (system.id, token.nonce) if token.nonce else None, environ, start_response)
        environ["huitong.hub"] = self.hub
        environ["huitong.system"] = system
        environ["huitong.soap_document"] = envelope
        return self.spyne_app(environ, start_response)

    def _push(self, operation, name: str, system, nonce, environ, start_response):
        try:
            data = canonical_request(operation, system.id)
            receipt = self.hub.acceptance.accept(data, system=system.id, grants=system.grants, nonce=nonce)
        except SoapFault as fault:
            self._log_refusal(fault, system.id, environ)
            return fault_response(fault, start_response)
        except NonceReplayed as exc:  # the log has its REJECTED event already
            log.warning("soap.refused", code=exc.code, system=system.id, remote_addr=environ.get("REMOTE_ADDR"))
            return fault_response(SoapFault(exc.code, str(exc), path="/Envelope/Header/Security/UsernameToken/Nonce"),
                                  start_response)
        except Exception as exc:
            return fault_response(server_fault(exc, name), start_response)
        body = receipt_response(name, receipt)
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]

    def _read(self, environ) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if length > self.max_bytes:
            raise SoapFault("REQUEST_TOO_LARGE", f"the request is {length} bytes; the cap is {self.max_bytes}")
        stream = environ["wsgi.input"]
        data = stream.read(length if length >= 0 else self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise SoapFault("REQUEST_TOO_LARGE", f"the request exceeds the cap of {self.max_bytes} bytes")
        return data

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

    def _log_refusal(self, fault: SoapFault, claimed: str | None, environ) -> None:
        log.warning("soap.refused", code=fault.code, system=claimed, reason=fault.text,
                    remote_addr=environ.get("REMOTE_ADDR"))
        try:
            self.hub.log.reject(RejectedMessage.single(fault.code, fault.text, fault.path, source=claimed),
                                source=claimed, body=None)
        except Exception as exc:  # the refusal stands even when the log cannot record it
            log.error("soap.refusal_not_logged", code=fault.code, error=str(exc))
