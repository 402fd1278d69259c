"""The baseline for the SOAP benchmark: a bare spyne service with the same operation and
types as /ws/exchange that answers at once (no security, no validation, no log, no broker),
served the same ways (gunicorn 'bench.soap_echo:application()'; uvicorn --factory
bench.soap_echo:asgi_application)."""
from __future__ import annotations

import datetime as dt

from spyne import Application, Unicode, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication
from spyne.service import Service

from adapters.soap import types as t


class EchoService(Service):
    @rpc(Unicode(min_occurs=1, nillable=False), Unicode, Unicode,
         t.CaseResult.customize(min_occurs=1, nillable=False),
         _in_arg_names={"message_id": "messageId", "correlation_id": "correlationId", "case": "caseResult"},
         _returns=t.Receipt)
    def PushCaseResult(ctx, message_id, correlation_id, target, case):
        return t.Receipt(receiptId=message_id, messageId=message_id, status="ACCEPTED",
                         acceptedAt=dt.datetime.now(dt.timezone.utc))


def application():
    import spyne.const
    spyne.const.MIN_GC_INTERVAL = float("inf")  # as the hub does (adapters.soap.mount)
    app = Application([EchoService], tns=t.NS, name="HuitongExchange",
                      in_protocol=Soap11(validator=None), out_protocol=Soap11())
    return WsgiApplication(app)


def asgi_application():
    """The echo under uvicorn, through the bridge bus.asgi gives the hub's WSGI parts."""
    import os

    from a2wsgi import WSGIMiddleware
    return WSGIMiddleware(application(), workers=int(os.environ.get("HUITONG_HTTP__THREADS", "8")))
