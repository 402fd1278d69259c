"""A separate department Web Service (spyne on a real HTTP port), standing in for the
development-and-reform commission's project system: it records every call it takes, who
signed it (WS-Security Username), and can be told to fail."""
from __future__ import annotations

import threading
from collections import Counter

import waitress
from spyne import Application, ServiceBase, Unicode, rpc
from spyne.model.fault import Fault
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from tests.helpers.soap import free_port

NS = "urn:fgw:tzxm:1"
WSSE_USERNAME = "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}Username"


class Department:
    def __init__(self):
        self.received: list[dict] = []
        self.usernames: list[str] = []
        self.fail_next = 0  # refuse this many calls with a fault, then recover
        self.fail_always = False
        self._lock = threading.Lock()
        department = self

        class ProjectService(ServiceBase):
            @rpc(Unicode, Unicode, Unicode, Unicode, Unicode, Unicode, _returns=Unicode)
            def ReceiveProjectCase(ctx, projectCode, caseNumber, itemName, applicantName, acceptedAt, messageId):
                with department._lock:
                    token = ctx.in_document.find(f".//{WSSE_USERNAME}") if ctx.in_document is not None else None
                    department.usernames.append(token.text if token is not None else None)
                    if department.fail_always or department.fail_next > 0:
                        department.fail_next = max(0, department.fail_next - 1)
                        raise Fault(faultcode="Server.Busy", faultstring="the project system is busy")
                    department.received.append({
                        "projectCode": projectCode, "caseNumber": caseNumber, "itemName": itemName,
                        "applicantName": applicantName, "acceptedAt": acceptedAt, "messageId": messageId})
                return f"OK {caseNumber}"

        app = Application([ProjectService], tns=NS, name="TzxmService",
                          in_protocol=Soap11(validator="lxml"), out_protocol=Soap11())
        self.port = free_port()
        self.server = waitress.create_server(WsgiApplication(app), host="127.0.0.1", port=self.port, threads=4)
        self.wsdl = f"http://127.0.0.1:{self.port}/tzxm?wsdl"
        self._closing = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.server.run()
        except OSError:
            if not self._closing:
                raise

    def counts(self) -> Counter:
        with self._lock:
            return Counter(r["messageId"] for r in self.received)

    def close(self) -> None:
        self._closing = True
        self.server.close()
