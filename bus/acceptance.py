"""Acceptance: the one door every adapter uses. Validate, check the sender is who the
envelope says, commit to the exchange log, answer with a receipt. One log event per message."""
from __future__ import annotations

import asyncio
from concurrent.futures import Future
from dataclasses import dataclass

import structlog

from bus.envelope import Envelope, parse_envelope
from bus.errors import RejectedMessage
from bus.exchange_log import ExchangeLog
from bus.logs import get_logger
from bus.receipts import Receipt
from schemas.validation import MessageValidator

log = get_logger("huitong.acceptance")


@dataclass(frozen=True, slots=True)
class Refused:
    """A record an adapter could not even turn into a message (bad bytes, an unmappable
    value): it is logged as REJECTED with the record as evidence, like any refusal."""

    rejection: RejectedMessage
    evidence: bytes | None = None


class Acceptance:
    def __init__(self, validator: MessageValidator, exchange_log: ExchangeLog):
        self.validator = validator
        self.log = exchange_log

    def check(self, data: bytes, *, system: str, grants: frozenset[str] | None = None) -> Envelope:
        """Validate only; raises RejectedMessage. With grants (an authenticated system's),
        a message type outside them is refused: deny by default. A hub granted FORWARD
        relays other systems' messages, so their Source need not be its own."""
        envelope = parse_envelope(data, self.validator)
        if envelope.source != system and not (grants and "FORWARD" in grants):
            raise RejectedMessage.single(
                "SOURCE_MISMATCH", f"envelope source {envelope.source} is not the sending system {system}",
                "/Envelope/Header/Source", message_id=envelope.message_id, source=system)
        if grants is not None and envelope.type not in grants:
            raise RejectedMessage.single(
                "NOT_AUTHORIZED", f"system {system} is not granted {envelope.type}",
                "/Envelope/Header/Type", message_id=envelope.message_id, source=system)
        return envelope

    def accept_many(self, items: list[bytes | Refused], *, system: str,
                    grants: frozenset[str] | None = None) -> list[Receipt]:
        """Accept a batch (a file of records, a front-table poll, a CLI run): acceptances and
        refusals alike are queued for the same group commit, so a batch costs one
        transaction instead of one per message."""
        return self.receipts(self.submit_many(items, system=system, grants=grants), system=system)

    def submit_many(self, items: list[bytes | Refused], *, system: str,
                    grants: frozenset[str] | None = None) -> list:
        """Validate and queue a batch without waiting for its commit, so a reader can
        prepare the next batch meanwhile; receipts() waits for it."""
        futures = []
        for data in items:
            if isinstance(data, Refused):
                futures.append(self.log.submit_reject(data.rejection, source=system, body=data.evidence))
                continue
            try:
                futures.append(self.log.submit(self.check(data, system=system, grants=grants)))
            except RejectedMessage as rejection:
                futures.append(self.log.submit_reject(rejection, source=system, body=data))
        return futures

    def receipts(self, futures: list, *, system: str) -> list[Receipt]:
        receipts = [pending.result() for pending in futures]
        for receipt in receipts:
            log.info("message.received" if receipt.ok else "message.rejected", system=system,
                     message_id=receipt.message_id, status=receipt.status, receipt_id=receipt.receipt_id,
                     code=receipt.errors[0].code if receipt.errors else None)
        return receipts

    def accept(self, data: bytes, *, system: str, grants: frozenset[str] | None = None,
               nonce: tuple[str, str] | None = None) -> Receipt:
        """Validate and commit; returns ACCEPTED, DUPLICATE or REJECTED once the log holds it.
        Raises StoreUnavailable when the log cannot commit (the sender should retry), and
        NonceReplayed when the request's nonce (recorded in the same commit) was seen before."""
        future, envelope = self.submit(data, system=system, grants=grants, nonce=nonce)
        return self._noted(future.result(), envelope, system)

    async def accept_async(self, data: bytes, *, system: str, grants: frozenset[str] | None = None,
                           nonce: tuple[str, str] | None = None) -> Receipt:
        """accept() for a coroutine (the ASGI push): the event loop serves other requests
        while the group commit runs, and no thread of the caller's waits for it."""
        future, envelope = self.submit(data, system=system, grants=grants, nonce=nonce)
        # Shielded: a request cancelled meanwhile (a server stopping) must not cancel the queued
        # acceptance; the committer commits it and answers every future it took.
        return self._noted(await asyncio.shield(asyncio.wrap_future(future)), envelope, system)

    def submit(self, data: bytes, *, system: str, grants: frozenset[str] | None = None,
               nonce: tuple[str, str] | None = None) -> tuple[Future, Envelope | None]:
        """Validate and queue for the next group commit without waiting: the future resolves
        to the Receipt once the log holds it. The envelope is None for a refusal."""
        try:
            envelope = self.check(data, system=system, grants=grants)
        except RejectedMessage as rejection:
            return self.log.submit_reject(rejection, source=system, body=data, nonce=nonce), None
        return self.log.submit(envelope, nonce=nonce), envelope

    def _noted(self, receipt: Receipt, envelope: Envelope | None, system: str) -> Receipt:
        if envelope is None:
            log.info("message.rejected", system=system, message_id=receipt.message_id,
                     code=receipt.errors[0].code, errors=len(receipt.errors), receipt_id=receipt.receipt_id)
            return receipt
        with structlog.contextvars.bound_contextvars(message_id=envelope.message_id, system=system):
            log.info("message.received", type=envelope.type, status=receipt.status,
                     receipt_id=receipt.receipt_id, case_number=envelope.keys.case_number)
        return receipt
