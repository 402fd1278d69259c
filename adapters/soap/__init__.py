"""The department Web Service interface: /ws/exchange (SOAP 1.1 document/literal, WSDL at
?wsdl, namespace urn:huitong:exchange:1), mounted into the hub's HTTP app by `huitong serve`
through the `huitong.http` entry point."""
from __future__ import annotations

PREFIX = "/ws/exchange"


def mount(hub):
    """Entry point: returns (prefix, WSGI app) for the hub's HTTP app."""
    import spyne.const
    from spyne.server.wsgi import WsgiApplication

    from adapters.soap.gateway import SoapGateway
    from adapters.soap.ratelimit import RateLimiter
    from adapters.soap.service import application
    from adapters.soap.wsse import Authenticator

    # spyne runs a full gc.collect() after a request at most once a second; on a busy hub
    # that stops every thread for tens of milliseconds. Python's own collector is enough.
    spyne.const.MIN_GC_INTERVAL = float("inf")
    soap = hub.settings.soap
    authenticator = Authenticator(hub.systems, tolerance_seconds=soap.created_tolerance_seconds,
                                  allow_password_text=soap.allow_password_text)
    return PREFIX, SoapGateway(hub, WsgiApplication(application()), authenticator,
                               RateLimiter(soap.rate_limit_per_system))
