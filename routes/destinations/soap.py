"""soap: call a department system's Web Service with zeep, from its WSDL.

The route's transform produces the operation's request element (document/literal); zeep
reads it against the WSDL's types and calls the operation, so what goes out is what the
department's WSDL says. WS-Security UsernameToken credentials come from the configuration
(the secret from an environment variable). The department's reply is recorded with the
DELIVERED event. A SOAP fault, a timeout or a refused connection is retried; a payload the
WSDL cannot take is not (it would fail the same way every time)."""
from __future__ import annotations

import json
import os
import threading

import requests
from lxml import etree

from bus.errors import DeliveryError, RejectedMessage
from routes.destinations import Destination, Outgoing
from schemas.hardened import HardenedParser

REPLY_LIMIT = 4000  # characters of the department's reply kept in the log


class SoapDestination(Destination):
    type = "soap"
    secret_options = ("secret",)
    options_schema = {
        "type": "object", "additionalProperties": False, "required": ["wsdl", "operation"],
        "properties": {
            "wsdl": {"type": "string", "minLength": 1, "description": "URL or file of the department's WSDL."},
            "operation": {"type": "string", "minLength": 1},
            "address": {"type": "string", "description": "Endpoint address, when it differs from the WSDL's."},
            "system": {"type": "string", "description": "The department system's id (who receives)."},
            "username": {"type": "string", "description": "WS-Security user the hub signs in as."},
            "secret_env": {"type": "string", "description": "Environment variable holding the password."},
            "secret": {"type": "string", "description": "The password itself (samples and tests only)."},
            "password_digest": {"type": "boolean", "default": True},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 10,
                        "description": "Seconds to wait for the department's answer."},
        },
    }

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        self.timeout = float(options.get("timeout", 10))
        self._local = threading.local()  # a zeep client per worker thread
        self._parser = HardenedParser()

    def _client(self):
        """(zeep client, service proxy) of this thread, made on first use."""
        cached = getattr(self._local, "client", None)
        if cached is None:
            import zeep
            from zeep.transports import Transport
            from zeep.wsse.username import UsernameToken

            wsse = None
            if self.options.get("username"):
                secret = self.options.get("secret") or os.environ.get(self.options.get("secret_env", ""), "")
                if not secret:
                    raise DeliveryError(f"destination {self.name}: no secret (set {self.options.get('secret_env')})",
                                        permanent=True)
                wsse = UsernameToken(self.options["username"], secret,
                                     use_digest=self.options.get("password_digest", True))
            transport = Transport(timeout=self.timeout, operation_timeout=self.timeout)
            try:
                client = zeep.Client(self.options["wsdl"], transport=transport, wsse=wsse)
            except (requests.RequestException, OSError) as exc:
                raise DeliveryError(f"WSDL {self.options['wsdl']} unavailable: {exc.__class__.__name__}") from None
            service = client.service
            if self.options.get("address"):
                binding = client.service._binding.name
                service = client.create_service(binding, self.options["address"])
            self._local.client = cached = (client, service)
        return cached

    def deliver(self, items: list[Outgoing]) -> list[dict | Exception]:
        return [self._deliver_one(item) for item in items]

    def _deliver_one(self, item: Outgoing) -> dict | Exception:
        return self._call(lambda client, service: self._invoke(client, service, item),
                          lambda result: {"reply": _reply(result)})

    def _invoke(self, client, service, item: Outgoing):
        import zeep.exceptions

        operation = self.options["operation"]
        try:
            body = service._binding._operations[operation].input.body
        except KeyError:
            raise DeliveryError(f"the WSDL has no operation {operation}", permanent=True) from None
        try:
            request = body.parse(self._parser.parse(item.payload), client.wsdl.types)
        except (RejectedMessage, zeep.exceptions.Error, ValueError) as exc:
            raise DeliveryError(f"payload does not fit {operation}: {exc}", code="TRANSFORM_FAILED",
                                permanent=True) from None
        arguments = {name: request[name] for name in request} if request is not None else {}
        return getattr(service, operation)(**arguments)

    def _call(self, invoke, interpret) -> dict | Exception:
        """Run one call; every way it can fail becomes a DeliveryError saying how."""
        import zeep.exceptions

        try:
            client, service = self._client()
            result = invoke(client, service)
        except DeliveryError as exc:
            return exc
        except zeep.exceptions.Fault as fault:
            return DeliveryError(f"{self.name} answered with a fault: {fault.code}: {fault.message}",
                                 code="DESTINATION_FAULT")
        except requests.Timeout:
            return DeliveryError(f"{self.name} did not answer within {self.timeout:g}s", code="DESTINATION_TIMEOUT")
        except (requests.RequestException, OSError) as exc:
            return DeliveryError(f"{self.name} unreachable: {exc.__class__.__name__}")
        except zeep.exceptions.Error as exc:
            return DeliveryError(f"{self.name}: {exc.__class__.__name__}: {exc}")
        return interpret(result)


def _reply(result) -> object:
    from zeep.helpers import serialize_object

    if isinstance(result, etree._Element):
        return etree.tostring(result, encoding="unicode")[:REPLY_LIMIT]
    data = serialize_object(result, dict)
    text = json.dumps(data, ensure_ascii=False, default=str)
    return data if len(text) <= REPLY_LIMIT else text[:REPLY_LIMIT]
