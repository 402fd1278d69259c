"""SOAP 1.1 faults with stable codes: faultcode `Client.<CODE>` when the sender must change
something, `Server.<CODE>` when the hub failed; the code is also in <detail><code>. Never a
stack trace: an internal failure names a reference that finds it in the hub's log."""
from __future__ import annotations

import uuid
from xml.sax.saxutils import escape  # escaping text for output; nothing is parsed here

from bus.errors import CODES, StoreUnavailable
from bus.logs import get_logger

log = get_logger("huitong.soap")

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
EXCHANGE_NS = "urn:huitong:exchange:1"


class SoapFault(Exception):
    def __init__(self, code: str, text: str, *, server: bool = False, path: str = "/"):
        assert code in CODES, code
        super().__init__(text)
        self.code, self.text, self.server, self.path = code, text, server, path

    @property
    def faultcode(self) -> str:
        return f"{'Server' if self.server else 'Client'}.{self.code}"

    def to_xml(self) -> bytes:
        return (f'<?xml version="1.0" encoding="UTF-8"?>'
                f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><soap:Fault>'
                f'<faultcode>soap:{self.faultcode}</faultcode>'
                f'<faultstring>{escape(self.text)}</faultstring>'
                f'<detail><h:fault xmlns:h="{EXCHANGE_NS}"><h:code>{self.code}</h:code>'
                f'<h:path>{escape(self.path)}</h:path></h:fault></detail>'
                f'</soap:Fault></soap:Body></soap:Envelope>').encode("utf-8")


def server_fault(exc: Exception, operation: str) -> SoapFault:
    """The fault for a failure inside an operation (call from the except block): a log that
    cannot commit says so (send again); anything else is logged under a reference."""
    if isinstance(exc, StoreUnavailable):
        return SoapFault("STORE_UNAVAILABLE", f"{exc}; the message was not accepted, send it again", server=True)
    reference = str(uuid.uuid4())
    log.exception("soap.internal_error", reference=reference, operation=operation)
    return SoapFault("INTERNAL", f"internal error; reference {reference}", server=True)


def fault_response(fault: SoapFault, start_response):
    body = fault.to_xml()
    # SOAP 1.1 over HTTP: every fault is a 500, which is what toolkits look for.
    start_response("500 Internal Server Error", [("Content-Type", "text/xml; charset=utf-8"),
                                                 ("Content-Length", str(len(body)))])
    return [body]
