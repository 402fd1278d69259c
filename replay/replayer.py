"""`huitong replay`: send logged messages through the routes again, as the routes stand now.

- dry run: what would be delivered where, and for each destination that got the message before,
  whether it would now get something else; where the transform changed, exactly which fields
  (the output then is rebuilt from the stylesheet archived when it was used, and checked
  against the digest recorded when it was delivered).
- sandbox: the canonical messages (byte for byte as logged) and what each destination would
  get, written under a directory instead of delivered.
- real: delivered by the routes' destinations, in this process, under a new replay id. The
  delivery records of the route workers are not touched (their idempotency is for the broker's
  redeliveries); the replay's DELIVERED and FAILED events carry its replay id, so the lineage
  shows both the first delivery and the replay. Forwards to other routes are not replayed:
  replay the receiving route.

Every replayed message gets a REPLAYED event: who, why, how, through which routes."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select

from bus.errors import DeliveryError, HuitongError, RejectedMessage
from bus.exchange_log import event_row
from bus.log_writers import writer_for
from bus.models import Event, Message, MessageBody
from replay.xmldiff import changed_fields
from routes.definition import Route
from routes.destinations import Outgoing
from routes.loader import RouteSet
from schemas.hardened import HardenedParser
from schemas.xslt import SafeStylesheet

CHUNK = 500
DRY_RUN, SANDBOX, DELIVER = "dry-run", "sandbox", "deliver"


class ReplayInvalid(HuitongError):
    code = "VALUE_INVALID"


@dataclass(frozen=True)
class ReplayRequest:
    reason: str
    by: str
    mode: str = DRY_RUN
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    route: str | None = None
    type: str | None = None
    case_number: str | None = None
    sandbox: Path | None = None
    sandbox_zip: bool = False  # one zip per destination (and one of the messages) instead of files

    def check(self, routes: RouteSet) -> None:
        if not self.reason or not self.reason.strip():
            raise ReplayInvalid("say why (--reason): a replay is recorded with its reason")
        if not (self.since or self.case_number):
            raise ReplayInvalid("say what to replay: --since (and --until) or --case")
        if self.since and self.until and self.until <= self.since:
            raise ReplayInvalid("until is not after since")
        if self.route and self.route not in routes.routes:
            raise ReplayInvalid(f"no route {self.route!r}; routes: {', '.join(sorted(routes.routes)) or '(none)'}",
                                code="ROUTE_UNKNOWN")
        if self.mode == SANDBOX and self.sandbox is None:
            raise ReplayInvalid("a sandbox replay needs a directory")


@dataclass
class Planned:
    """One message for one destination of one route."""

    message_id: str
    source: str
    type: str
    route: str
    destination: str
    status: str  # new, unchanged, changed, failed, no-longer; after delivery: delivered, failed
    changes: list[dict] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [])}


@dataclass
class ReplayReport:
    replay_id: str
    mode: str
    messages: int = 0
    planned: list[Planned] = field(default_factory=list)
    skipped_forwards: int = 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for p in self.planned:
            out[p.status] += 1
        return dict(out)


class Replayer:
    def __init__(self, engine: Engine, routes: RouteSet, parser: HardenedParser):
        self.engine = engine
        self.routes = routes
        self.parser = parser
        self._writer = writer_for(engine.dialect.name)
        self._stylesheets: dict[str, SafeStylesheet | None] = {}
        self._archive: dict[str, bytes] = {}
        self._sandbox: Sandbox | None = None

    def run(self, request: ReplayRequest, *, keep_plan: bool = True) -> ReplayReport:
        request.check(self.routes)
        report = ReplayReport(str(uuid.uuid4()), request.mode)
        routes = [self.routes.routes[request.route]] if request.route else self.routes.enabled()
        try:
            self._run(request, report, routes, keep_plan)
        finally:
            if self._sandbox is not None:
                self._sandbox.close()
                self._sandbox = None
        if request.mode == SANDBOX:
            summary = {"replay_id": report.replay_id, "reason": request.reason, "by": request.by,
                       "messages": report.messages, "counts": report.counts()}
            request.sandbox.mkdir(parents=True, exist_ok=True)
            (request.sandbox / f"replay-{report.replay_id}.json").write_text(
                json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return report

    def _run(self, request: ReplayRequest, report: ReplayReport, routes: list[Route], keep_plan: bool) -> None:
        for chunk in self._chunks(request):
            report.messages += len(chunk)
            delivered_then = self._delivered_then(chunk, {r.id for r in routes}) if request.mode == DRY_RUN else {}
            plans, outgoing = [], defaultdict(list)
            for row in chunk:
                for route, target, payload in self._through(routes, row, report):
                    transform = route.transform_for(target)
                    plan = Planned(row.message_id, row.source, row.type, route.id, target.name, "new")
                    if isinstance(payload, DeliveryError):
                        plan.status, plan.error = "failed", str(payload)
                    elif request.mode == DRY_RUN:
                        self._compare(plan, row, payload, delivered_then.pop((row.seq, route.id, target.name), None))
                    else:
                        outgoing[target.name].append((plan, Outgoing(row.seq, row.message_id, row.source, row.type,
                                                                     row.correlation_id, route.id, payload,
                                                                     row.content), transform))
                    plans.append(plan)
            if request.mode == DRY_RUN:
                for (seq, route_id, destination), _ in delivered_then.items():
                    row = next(r for r in chunk if r.seq == seq)
                    plans.append(Planned(row.message_id, row.source, row.type, route_id, destination, "no-longer"))
            elif request.mode == SANDBOX:
                self._sandbox = self._sandbox or Sandbox(request.sandbox, zipped=request.sandbox_zip)
                self._sandbox.write(chunk, outgoing)
            events = self._replayed_events(request, report, chunk, plans)
            if request.mode == DELIVER:
                events += self._deliver(report, outgoing)
            if events:
                archive, self._archive = self._archive, {}
                with self.engine.begin() as conn:
                    self._writer.insert_bodies(conn, archive)  # the stylesheet versions it used
                    self._writer.append_events(conn, events)
            if keep_plan:
                report.planned += plans

    # -- what to replay -------------------------------------------------------------------------
    def _chunks(self, request: ReplayRequest):
        query = (select(Message.seq, Message.message_id, Message.source, Message.type, Message.correlation_id,
                        Message.digest, MessageBody.content)
                 .join(MessageBody, MessageBody.digest == Message.digest).order_by(Message.seq))
        if request.since:
            query = query.where(Message.received_at >= request.since)
        if request.until:
            query = query.where(Message.received_at < request.until)
        if request.type:
            query = query.where(Message.type == request.type)
        if request.case_number:
            query = query.where(Message.case_number == request.case_number)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query)
            while True:
                chunk = result.fetchmany(CHUNK)
                if not chunk:
                    return
                yield chunk

    def _through(self, routes: list[Route], row, report: ReplayReport):
        """(route, target, payload now or DeliveryError) for every route that takes the message now."""
        root = None
        for route in routes:
            if not route.from_.matches(row.type, row.source):
                continue
            if route.needs_body and root is None:
                try:
                    root = self.parser.parse(row.content)
                except RejectedMessage as exc:
                    for target in route.targets:
                        yield route, target, DeliveryError(f"logged message does not parse: {exc}",
                                                           code="TRANSFORM_FAILED")
                    continue
            if route.when is not None and not route.when(root):
                continue
            for target in route.targets:
                if target.forward_to:
                    report.skipped_forwards += 1
                    continue
                transform = route.transform_for(target)
                try:
                    yield route, target, transform.apply(root) if transform else row.content
                except DeliveryError as exc:
                    yield route, target, exc

    # -- dry run: then and now ------------------------------------------------------------------
    def _delivered_then(self, chunk, route_ids: set[str]) -> dict[tuple[int, str, str], dict]:
        """The last delivery of each (message, route, destination) as its event recorded it, on
        the routes being replayed."""
        out: dict[tuple[int, str, str], dict] = {}
        with self.engine.connect() as conn:
            for event in conn.execute(select(Event.message_seq, Event.route, Event.detail)
                                      .where(Event.kind == "DELIVERED", Event.message_seq.in_([r.seq for r in chunk]))
                                      .order_by(Event.seq)):
                detail = json.loads(event.detail or "{}")
                if event.route in route_ids and detail.get("destination"):
                    out[(event.message_seq, event.route, detail["destination"])] = detail
        return out

    def _compare(self, plan: Planned, row, now: bytes, then: dict | None) -> None:
        if then is None:
            return  # new: not delivered there before
        then_digest = then.get("payload_digest")
        now_digest = hashlib.sha256(now).hexdigest()
        if then_digest is None:
            plan.status, plan.error = "unknown", "delivered before payloads were recorded: cannot compare"
        elif then_digest == now_digest:
            plan.status = "unchanged"
        else:
            plan.status = "changed"
            before = self._output_then(row, then)
            if before is None:
                plan.error = "the output then cannot be rebuilt (no archived stylesheet): fields unknown"
            else:
                plan.changes = changed_fields(before, now, self.parser)

    def _output_then(self, row, then: dict) -> bytes | None:
        if then.get("payload_digest") == row.digest:
            return row.content  # the canonical message itself went out
        digest = then.get("transform_digest")
        if digest is None:
            return None
        stylesheet = self._stylesheet(digest)
        if stylesheet is None:
            return None
        output = bytes(stylesheet(self.parser.parse(row.content)))
        return output if hashlib.sha256(output).hexdigest() == then["payload_digest"] else None

    def _stylesheet(self, digest: str) -> SafeStylesheet | None:
        if digest not in self._stylesheets:
            with self.engine.connect() as conn:
                text = conn.scalar(select(MessageBody.content).where(MessageBody.digest == digest))
            self._stylesheets[digest] = SafeStylesheet.from_bytes(text, self.parser) if text else None
        return self._stylesheets[digest]

    # -- sandbox and real delivery --------------------------------------------------------------
    def _deliver(self, report: ReplayReport, outgoing: dict) -> list[dict]:
        now = dt.datetime.now(dt.timezone.utc)
        events = []
        for name, items in outgoing.items():
            destination = self.routes.destinations[name]
            try:
                outcomes = destination.deliver([item for _, item, _ in items])
            except Exception as exc:  # a plug-in that raised instead of reporting
                outcomes = [DeliveryError(f"{name}: {exc.__class__.__name__}: {exc}")] * len(items)
            for (plan, item, transform), outcome in zip(items, outcomes):
                common = dict(message_seq=item.message_seq, message_id=item.message_id, route=item.route,
                              source=item.source)
                if isinstance(outcome, Exception):
                    plan.status, plan.error = "failed", str(outcome)
                    events.append(event_row("FAILED", now, code=getattr(outcome, "code", "DELIVERY_FAILED"),
                                            detail={"destination": name, "replay_id": report.replay_id,
                                                    "error": str(outcome)[:2000]}, **common))
                else:
                    plan.status = "delivered"
                    made_by = {"transform": transform.name, **({"transform_digest": transform.digest}
                                                               if transform.digest else {})} if transform else {}
                    if transform is not None and transform.digest:
                        self._archive[transform.digest] = transform.source
                    events.append(event_row("DELIVERED", now, detail={
                        "destination": name, "replay_id": report.replay_id, "attempt": 1,
                        "payload_digest": hashlib.sha256(item.payload).hexdigest(), **made_by, **outcome}, **common))
        return events

    @staticmethod
    def _replayed_events(request: ReplayRequest, report: ReplayReport, chunk, plans: list[Planned]) -> list[dict]:
        if request.mode == DRY_RUN:
            return []
        now = dt.datetime.now(dt.timezone.utc)
        routes_of: dict[str, set] = defaultdict(set)
        for plan in plans:
            routes_of[plan.message_id].add(plan.route)
        return [event_row("REPLAYED", now, message_seq=row.seq, message_id=row.message_id, source=row.source,
                          detail={"replay_id": report.replay_id, "mode": request.mode, "by": request.by,
                                  "reason": request.reason, "routes": sorted(routes_of.get(row.message_id, ())),
                                  **({"sandbox": str(request.sandbox)} if request.sandbox else {})})
                for row in chunk]


class Sandbox:
    """Where a sandbox replay writes: messages/<id>.xml (the canonical message as logged) and
    <route>/<destination>/<id>.xml (what that destination would get); zipped, the same names in
    messages.zip and <route>/<destination>.zip, which is much faster where creating files is
    slow (the development VM makes ~3,000 files/s)."""

    def __init__(self, directory: Path, *, zipped: bool = False):
        self.directory = Path(directory)
        self.zipped = zipped
        self._open: dict[Path, object] = {}

    def _target(self, folder: Path):
        target = self._open.get(folder)
        if target is None:
            if self.zipped:
                folder.parent.mkdir(parents=True, exist_ok=True)
                target = zipfile.ZipFile(folder.with_suffix(".zip"), "w", zipfile.ZIP_STORED)
            else:
                folder.mkdir(parents=True, exist_ok=True)
                target = folder
            self._open[folder] = target
        return target

    def _put(self, folder: Path, name: str, data: bytes) -> None:
        target = self._target(folder)
        if self.zipped:
            target.writestr(name, data)
        else:
            with open(target / name, "wb") as out:
                out.write(data)

    def write(self, chunk, outgoing: dict) -> None:
        for row in chunk:
            self._put(self.directory / "messages", f"{row.message_id}.xml", row.content)
        for destination, items in outgoing.items():
            for plan, item, _ in items:
                self._put(self.directory / item.route / destination, f"{item.message_id}.xml", item.payload)
                plan.status = "written"

    def close(self) -> None:
        for target in self._open.values():
            if self.zipped:
                target.close()
        self._open.clear()
