"""The department Web Service interface: /ws/exchange (SOAP 1.1 document/literal, WSDL at
?wsdl, namespace urn:huitong:exchange:1), mounted into the hub's HTTP app by `huitong serve`
through the `huitong.http` entry point."""
from __future__ import annotations

PREFIX = "/ws/exchange"


def mount(hub):
    """Entry point: returns (prefix, WSGI app) for the hub's HTTP app."""
    from spyne.server.wsgi import WsgiApplication

    from adapters.soap.gateway import SoapGateway
    from adapters.soap.ratelimit import RateLimiter
    from adapters.soap.service import application
    from adapters.soap.wsse import Authenticator

    soap = hub.settings.soap
    authenticator = Authenticator(hub.systems, tolerance_seconds=soap.created_tolerance_seconds,
                                  allow_password_text=soap.allow_password_text)
    return PREFIX, SoapGateway(hub, WsgiApplication(application()), authenticator,
                               RateLimiter(soap.rate_limit_per_system))
