"""A running hub on a real HTTP port, and raw SOAP requests built by hand (for what the SOAP
toolkits cannot be made to send: replays, stale times, hostile XML)."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import socket
import threading
import urllib.error
import urllib.request
from xml.sax.saxutils import escape  # building requests; parsing goes through HardenedParser

import waitress
from lxml import etree

from bus.http import create_app, serve_options
from bus.hub import Hub
from schemas.hardened import HardenedParser, XmlLimits

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
EX = "urn:huitong:exchange:1"
SECRET = "sample-secret-not-real"  # an obvious sample


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningHub:
    """Hub + an HTTP server on 127.0.0.1:<free port>, in this process: waitress (the WSGI app,
    as `huitong serve` runs it) or, with asgi=True, uvicorn (bus.asgi, as production may)."""

    def __init__(self, settings, *, asgi: bool = False):
        self.hub = Hub(settings).start()
        self.port = free_port()
        self.asgi = asgi
        if asgi:
            import uvicorn

            from bus.asgi import create_asgi_app
            self.server = uvicorn.Server(uvicorn.Config(create_asgi_app(self.hub), host="127.0.0.1", port=self.port,
                                                        lifespan="off", log_level="warning",
                                                        timeout_graceful_shutdown=10))
        else:
            self.server = waitress.create_server(create_app(self.hub), host="127.0.0.1", port=self.port,
                                                 **serve_options(settings))
        self._closing = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        if asgi:
            _wait_until(lambda: self.server.started, "uvicorn did not start")
        self.url = f"http://127.0.0.1:{self.port}/ws/exchange"

    def _serve(self) -> None:
        try:
            self.server.run()
        except OSError:
            if not self._closing:  # waitress has no stop: closing its socket ends run() this way
                raise

    def close(self) -> None:
        self._closing = True
        if self.asgi:
            self.server.should_exit = True
            self.thread.join(timeout=30)
        else:
            self.server.close()
        self.hub.stop()
        delete_route_queues(self.hub)


def _wait_until(condition, message: str, timeout: float = 30) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.02)


def delete_route_queues(hub: Hub) -> None:
    """Durable route queues outlive a test on RabbitMQ and would keep collecting copies of
    every later test's messages; they go with the test that declared them."""
    if hub.settings.embedded_broker:
        return
    from bus.broker import connect
    conn = connect(hub.settings.broker_url)
    try:
        channel = conn.channel()
        for service in hub.services:
            for queue in service.queues:
                queue(channel).delete()
    finally:
        conn.release()


def password_digest(nonce: bytes, created: str, secret: str) -> str:
    """The UsernameToken Profile's formula, written out here independently of the hub."""
    return base64.b64encode(hashlib.sha1(nonce + created.encode() + secret.encode()).digest()).decode()


def now_created(offset_seconds: float = 0) -> str:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset_seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def security_header(username: str, secret: str, *, nonce: bytes | None = None, created: str | None = None,
                    text_password: bool = False, password: str | None = None) -> str:
    nonce = os.urandom(16) if nonce is None else nonce
    created = created or now_created()
    if text_password:
        pw = f'<wsse:Password Type="{PROFILE}#PasswordText">{escape(password or secret)}</wsse:Password>'
    else:
        pw = (f'<wsse:Password Type="{PROFILE}#PasswordDigest">'
              f'{password or password_digest(nonce, created, secret)}</wsse:Password>')
    return (f'<wsse:Security xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}"><wsse:UsernameToken>'
            f'<wsse:Username>{escape(username)}</wsse:Username>{pw}'
            f'<wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">'
            f'{base64.b64encode(nonce).decode()}</wsse:Nonce><wsu:Created>{created}</wsu:Created>'
            f'</wsse:UsernameToken></wsse:Security>')


def envelope(body: str, header: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:ex="{EX}">'
            f'<soap:Header>{header}</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>').encode()


def push_message(canonical: bytes) -> str:
    return f"<ex:PushMessage><ex:envelope>{escape(canonical.decode('utf-8'))}</ex:envelope></ex:PushMessage>"


# Answers are read through the project's one parser too (with room for the biggest answer).
parse_xml = HardenedParser(XmlLimits(max_bytes=64 * 1024 * 1024)).parse


def post(url: str, data: bytes, headers: dict | None = None) -> tuple[int, etree._Element]:
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""', **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, parse_xml(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, parse_xml(exc.read())


def fault_of(doc: etree._Element) -> tuple[str, str, str] | None:
    """(faultcode, detail code, faultstring) of a fault response, or None."""
    fault = doc.find(f".//{{{SOAP_ENV}}}Fault")
    if fault is None:
        return None
    return (fault.findtext("faultcode"), fault.findtext(f".//{{{EX}}}code"), fault.findtext("faultstring"))


def receipt_of(doc: etree._Element) -> dict:
    receipt = doc.find(f".//{{{SOAP_ENV}}}Body/*/*")
    out = {etree.QName(child).localname: child.text for child in receipt if len(child) == 0}
    out["errors"] = [{etree.QName(f).localname: f.text for f in error}
                     for error in receipt.iterfind(f"{{{EX}}}errors/{{{EX}}}Error")]
    return out
