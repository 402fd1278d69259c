"""The operations of /ws/exchange (SOAP 1.1, document/literal, urn:huitong:exchange:1).

By the time an operation runs, adapters.soap.gateway has parsed the request through the
hardened parser and authenticated the system; the operation finds both in the WSGI environ."""
from __future__ import annotations

from importlib.metadata import entry_points

from spyne import Application, Fault, Unicode, rpc
from spyne.model.fault import Fault as SpyneFault
from spyne.protocol.soap import Soap11
from spyne.service import Service

from adapters.soap import types as t
from adapters.soap.canonical import to_canonical
from adapters.soap.fast_push import message_bytes
from adapters.soap.faults import server_fault
from bus.envelope import envelope_xml
from bus.receipts import Receipt



def _receipt(receipt: Receipt) -> t.Receipt:
    return t.Receipt(receiptId=receipt.receipt_id, messageId=receipt.message_id, status=receipt.status,
                     acceptedAt=receipt.accepted_at,
                     errors=[t.Error(path=e.path, code=e.code, text=e.text) for e in receipt.errors] or None)


def _context(ctx):
    env = ctx.transport.req_env
    return env["huitong.hub"], env["huitong.system"]


def _push_typed(ctx, message_type: str, message, message_id, correlation_id, target) -> t.Receipt:
    hub, system = _context(ctx)
    if not message_id or not message_id.strip():
        raise Fault("Client.SOAP_MALFORMED", f"Push{message_type} needs a messageId")
    body = to_canonical(message, message_type)
    data = envelope_xml(message_type, body, system.id, message_id=message_id,
                        correlation_id=correlation_id, target=target)
    return _receipt(hub.acceptance.accept(data, system=system.id, grants=system.grants))


class ExchangeService(Service):
    @rpc(Unicode(min_occurs=1, nillable=False), Unicode, Unicode, t.CaseAccepted.customize(min_occurs=1, nillable=False),
         _in_arg_names={"message_id": "messageId", "correlation_id": "correlationId", "case": "caseAccepted"},
         _returns=t.Receipt)
    def PushCaseAccepted(ctx, message_id, correlation_id, target, case):
        """Push 办件基本信息 (the case was accepted). messageId is a UUID the sender keeps for retries."""
        return _push_typed(ctx, "CaseAccepted", case, message_id, correlation_id, target)

    @rpc(Unicode(min_occurs=1, nillable=False), Unicode, Unicode, t.CaseProcess.customize(min_occurs=1, nillable=False),
         _in_arg_names={"message_id": "messageId", "correlation_id": "correlationId", "case": "caseProcess"},
         _returns=t.Receipt)
    def PushCaseProcess(ctx, message_id, correlation_id, target, case):
        """Push 办件过程信息 (one step of the case's handling)."""
        return _push_typed(ctx, "CaseProcess", case, message_id, correlation_id, target)

    @rpc(Unicode(min_occurs=1, nillable=False), Unicode, Unicode, t.CaseResult.customize(min_occurs=1, nillable=False),
         _in_arg_names={"message_id": "messageId", "correlation_id": "correlationId", "case": "caseResult"},
         _returns=t.Receipt)
    def PushCaseResult(ctx, message_id, correlation_id, target, case):
        """Push 办件结果信息 (how the case ended)."""
        return _push_typed(ctx, "CaseResult", case, message_id, correlation_id, target)

    @rpc(Unicode(min_occurs=1, nillable=False), _returns=t.Receipt)
    def PushMessage(ctx, envelope):
        """Push a whole canonical envelope (any message type) as an XML string."""
        hub, system = _context(ctx)
        data = message_bytes(envelope)
        return _receipt(hub.acceptance.accept(data, system=system.id, grants=system.grants))

    @rpc(Unicode(min_occurs=1, nillable=False), _in_arg_names={"message_id": "messageId"}, _returns=t.Receipt)
    def QueryReceipt(ctx, message_id):
        """The receipt of a message this system pushed earlier."""
        hub, system = _context(ctx)
        receipt = hub.log.find_receipt(system.id, message_id) or hub.log.find_rejection(system.id, message_id)
        if receipt is None:
            raise Fault("Client.NOT_FOUND", f"no message {message_id} from {system.id} is in the log")
        return _receipt(receipt)

    @rpc(Unicode(min_occurs=1, nillable=False), _in_arg_names={"case_number": "caseNumber"}, _returns=t.CaseStatus)
    def QueryCase(ctx, case_number):
        """The messages of a case and their status. A system sees a case it has sent
        messages for; for any other case the list is empty."""
        hub, system = _context(ctx)
        rows = hub.log.case_messages(case_number)
        if not any(row.source == system.id for row in rows):
            rows = []
        return t.CaseStatus(caseNumber=case_number, messages=[
            t.CaseMessage(messageId=r.message_id, type=r.type, source=r.source, receivedAt=r.received_at,
                          status="PUBLISHED" if r.published_at else "LOGGED") for r in rows] or None)


class PreparsedSoap11(Soap11):
    """Soap11 that takes the document the gateway already parsed with the hardened parser,
    so spyne's own parser never sees the raw bytes."""

    def create_in_document(self, ctx, charset=None):
        ctx.in_document = (ctx.transport.req_env["huitong.soap_document"], {})


class GuardedApplication(Application):
    """Known failures become faults with stable codes; anything else a Server.INTERNAL fault
    with a reference, the details going to the log only (never a stack trace to the sender)."""

    def call_wrapper(self, ctx):
        try:
            return super().call_wrapper(ctx)
        except SpyneFault:
            raise
        except Exception as exc:
            fault = server_fault(exc, ctx.method_name)
            raise Fault(fault.faultcode, fault.text) from None


def services() -> list:
    """The exchange operations, and those other packages add to the same endpoint (the
    catalog's queries) through the `huitong.soap.services` entry points."""
    extra = [ep.load() for ep in sorted(entry_points(group="huitong.soap.services"), key=lambda ep: ep.name)]
    return [ExchangeService, *extra]


def application() -> Application:
    return GuardedApplication(services(), tns=t.NS, name="HuitongExchange",
                              in_protocol=PreparsedSoap11(validator=None), out_protocol=Soap11())


OPERATIONS = frozenset(name for service in services() for name in service.public_methods)
