"""hub: forward the canonical message to an upper- or lower-level hub's /ws/exchange with
PushMessage, signed in as this hub (registered there with the FORWARD grant). The other
hub's receipt is the reply: ACCEPTED or DUPLICATE is delivered (a retry after a lost answer
is a DUPLICATE there, never a second message); REJECTED will not change on a retry."""
from __future__ import annotations

from bus.errors import DeliveryError
from routes.destinations import Outgoing
from routes.destinations.soap import SoapDestination


class HubDestination(SoapDestination):
    type = "hub"
    options_schema = {
        "type": "object", "additionalProperties": False, "required": ["url", "username"],
        "properties": {
            "url": {"type": "string", "minLength": 1, "description": "The other hub's /ws/exchange."},
            "username": {"type": "string", "description": "This hub's system id there."},
            "secret_env": {"type": "string", "description": "Environment variable holding the password."},
            "secret": {"type": "string", "description": "The password itself (samples and tests only)."},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 10},
        },
    }

    def __init__(self, name, options, context):
        super().__init__(name, {**options, "wsdl": options["url"] + "?wsdl", "operation": "PushMessage",
                                "address": options["url"]}, context)

    def _deliver_one(self, item: Outgoing) -> dict | Exception:
        return self._call(lambda client, service: service.PushMessage(envelope=item.payload.decode("utf-8")),
                          self._receipt)

    @staticmethod
    def _receipt(result) -> dict | Exception:
        receipt = {"receiptId": result.receiptId, "messageId": result.messageId, "status": result.status}
        if result.status in ("ACCEPTED", "DUPLICATE"):
            return {"reply": receipt}
        from zeep.helpers import serialize_object

        listed = serialize_object(result, dict).get("errors") or {}
        items = next(iter(listed.values()), None) if isinstance(listed, dict) else listed
        errors = [f"{e['code']} at {e['path']}: {e['text']}" for e in items or []]
        return DeliveryError(f"the hub refused the message: {'; '.join(errors) or result.status}",
                             code="DESTINATION_FAULT", permanent=True)
