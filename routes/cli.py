"""`huitong routes`, `huitong dlq` and `huitong worker` (registered through the huitong.cli
entry points). Operator actions on dead letters record who and why in the exchange log."""
from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import click

from bus.cli_common import _hub, _settings, config_option, engine_for, run_until_stopped
from bus.errors import HuitongError, RejectedMessage, RoutesInvalid
from bus.logs import get_logger
from bus.masking import mask_text

log = get_logger("huitong.operator")


operator_option = click.option("--operator", default=None, metavar="NAME",
                               help="Who acts (recorded in the exchange log; default: your login name).")


def _route_set(settings):
    from routes.destinations import DestinationContext
    from routes.loader import load_routes
    from schemas.hardened import HardenedParser, XmlLimits

    context = DestinationContext(settings, state_dir=settings.state_dir)
    return load_routes(settings.routes.dir or None, settings.destinations, context,
                       parser=HardenedParser(XmlLimits(**settings.xml.model_dump())))


def _checked_routes(settings):
    try:
        return _route_set(settings)
    except RoutesInvalid as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        raise click.ClickException(f"{len(exc.problems)} problem(s) in the routes; nothing runs until they are fixed")


def _store(settings):
    from bus.database import ensure_schema, make_engine
    from routes.deliveries import DeliveryStore

    engine = make_engine(settings.effective_database_url)
    try:
        ensure_schema(engine, auto_upgrade=False)
    except HuitongError as exc:
        raise click.ClickException(str(exc)) from None
    return DeliveryStore(engine)


# -- huitong routes ------------------------------------------------------------------------------
@click.group()
def routes():
    """Route files: list, show, check, dry-run."""


@routes.command("check")
@config_option
def routes_check(config_path):
    """Check route files and destinations: unknown keys, missing destinations or routes, XPath
    or XSLT that does not compile. Exits non-zero on any problem (each with file and line)."""
    settings = _settings(config_path)
    route_set = _checked_routes(settings)
    click.echo(f"{len(route_set.routes)} route(s) and {len(settings.destinations)} destination(s) are fine "
               f"({settings.routes.dir or 'no route directory configured'})")


@routes.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per route.")
def routes_list(config_path, as_json):
    """One line per route: id, state, what it takes, where it delivers, dead letters."""
    settings = _settings(config_path)
    route_set = _checked_routes(settings)
    try:
        dead = _store(settings).dead_counts()
    except click.ClickException:
        dead = {}
    for route in route_set.routes.values():
        row = {"id": route.id, "enabled": route.enabled, "from": _from_text(route.from_),
               "to": [t.name for t in route.targets], "dead_letters": dead.get(route.id, 0),
               "description": route.description}
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            state = "on " if route.enabled else "off"
            click.echo(f"{route.id:<32} {state} {row['from']:<40} -> {', '.join(row['to'])}"
                       f"  dead={row['dead_letters']}")


@routes.command("show")
@config_option
@click.argument("route_id")
def routes_show(config_path, route_id):
    """Everything about one route: filter, bindings, predicates, transforms, destinations, retries."""
    settings = _settings(config_path)
    route_set = _checked_routes(settings)
    route = _route(route_set, route_id)
    from bus.topology import dead_queue_name, route_queue_name

    lines = [f"route       {route.id} ({'enabled' if route.enabled else 'disabled'})",
             f"file        {route.source_file}",
             f"description {route.description or '-'}",
             f"from        {_from_text(route.from_)}",
             f"queue       {route_queue_name(route.id)} bound with {', '.join(route.from_.binding_keys())}",
             f"dead queue  {dead_queue_name(route.id)}",
             f"when        {json.dumps(route.when_text, ensure_ascii=False) if route.when_text else '-'}",
             f"transform   {route.transform.name if route.transform else '-'}",
             f"retry       {route.retry.attempts} attempts, first after ~{route.retry.first_delay:g}s, "
             f"at most {route.retry.max_delay:g}s apart"]
    for target in route.targets:
        destination = route_set.destinations[target.name]
        extra = f" (transform {target.transform.name})" if target.transform else ""
        lines.append(f"to          {target.name}: {destination.describe()}{extra}")
    click.echo("\n".join(lines))


@routes.command("pause")
@config_option
@click.argument("route_id")
@click.option("--reason", required=True, help="Why (recorded with the pause, shown in the console).")
@operator_option
def routes_pause(config_path, route_id, reason, operator):
    """Stop the workers taking from ROUTE_ID's queue (messages wait there; retries are held)
    until `huitong routes resume`. Running hubs see it within a second."""
    from routes.pausing import PauseStore
    settings = _settings(config_path)
    route_set = _checked_routes(settings)
    try:
        _route(route_set, route_id)
    finally:
        route_set.close()
    try:
        done = PauseStore(engine_for(settings)).pause(route_id, by=operator or getpass.getuser(), reason=reason)
    except HuitongError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"route {route_id} paused" if done else f"route {route_id} was paused already")


@routes.command("resume")
@config_option
@click.argument("route_id")
@click.option("--reason", default=None, help="Why (recorded).")
@operator_option
def routes_resume(config_path, route_id, reason, operator):
    """Let the workers take from a paused ROUTE_ID's queue again."""
    from routes.pausing import PauseStore
    settings = _settings(config_path)
    done = PauseStore(engine_for(settings)).resume(route_id, by=operator or getpass.getuser(), reason=reason)
    click.echo(f"route {route_id} resumed" if done else f"route {route_id} was not paused")


@routes.command("test")
@config_option
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--route", "only", metavar="ID", help="Only this route.")
@click.option("--show-personal-data", is_flag=True,
              help="Print outputs unmasked (citizen ids and phone numbers are masked by default).")
def routes_test(config_path, file, only, show_personal_data):
    """Dry run: which routes FILE matches and, for each destination, the transformed output.
    Nothing is logged or sent."""
    from bus.envelope import parse_envelope
    from schemas.validation import MessageValidator
    from schemas.hardened import XmlLimits

    settings = _settings(config_path)
    route_set = _checked_routes(settings)
    validator = MessageValidator(XmlLimits(**settings.xml.model_dump()))
    try:
        envelope = parse_envelope(Path(file).read_bytes(), validator)
    except RejectedMessage as rejection:
        click.echo(f"INVALID  {file}: the hub would refuse it, so no route would see it")
        for error in rejection.errors:
            click.echo(f"  {error.code} at {error.path}: {mask_text(error.text)}")
        sys.exit(1)
    root = validator.parser.parse(envelope.xml)
    shown = (lambda text: text) if show_personal_data else mask_text
    candidates = [_route(route_set, only)] if only else list(route_set.routes.values())
    matched = 0
    click.echo(f"{envelope.type} {envelope.message_id} from {envelope.source} (routing key {envelope.routing_key})")
    for route in candidates:
        reason = _mismatch(route, envelope, root)
        if reason:
            click.echo(f"\n- {route.id}: no match ({reason})")
            continue
        matched += 1
        click.echo(f"\n+ {route.id}: matches" + ("" if route.enabled else " (but the route is disabled)"))
        for target in route.targets:
            transform = route.transform_for(target)
            try:
                payload = transform.apply(root) if transform else envelope.xml
            except HuitongError as exc:
                click.echo(f"  -> {target.name}: {exc.code}: {exc}")
                continue
            via = f" via {transform.name}" if transform else " (the canonical message)"
            click.echo(f"  -> {target.name}{via}:")
            click.echo("     " + shown(payload.decode("utf-8", "replace")).replace("\n", "\n     "))
    click.echo(f"\n{matched} of {len(candidates)} route(s) match")


def _mismatch(route, envelope, root) -> str | None:
    f = route.from_
    if f.types and envelope.type not in f.types:
        return f"type {envelope.type} is not one of {', '.join(f.types)}"
    if not f.matches(envelope.type, envelope.source):
        return f"source {envelope.source} is outside {_from_text(f)}"
    if route.when is not None and not route.when(root):
        return "the when-condition is false"
    return None


def _from_text(f) -> str:
    parts = [f"{name}={','.join(values)}" for name, values in
             (("types", f.types), ("sources", f.sources), ("regions", f.regions), ("keys", f.keys)) if values]
    return " ".join(parts) or "everything"


def _route(route_set, route_id: str):
    route = route_set.routes.get(route_id)
    if route is None:
        raise click.ClickException(f"no route {route_id!r}; routes: {', '.join(route_set.routes) or 'none'}")
    return route


# -- huitong dlq ---------------------------------------------------------------------------------


@click.group()
def dlq():
    """Dead letters: messages a route could not deliver after every attempt."""


@dlq.command("list")
@config_option
@click.argument("route_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dead letter.")
def dlq_list(config_path, route_id, as_json):
    """The dead letters of ROUTE_ID, oldest first, with the last error."""
    settings = _settings(config_path)
    letters = _store(settings).dead_letters(route_id)
    for d in letters:
        row = {"id": d.id, "message_id": d.message_id, "type": d.type, "source": d.source,
               "destination": d.destination, "attempts": d.attempts, "code": d.error_code,
               "error": mask_text(d.last_error or ""), "dead_at": d.dead_at.isoformat(timespec="seconds")}
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo(f"{d.id:>8}  {row['dead_at']}  {d.message_id}  {d.type:<14} -> {d.destination}  "
                       f"{d.attempts} attempt(s)  {d.error_code}: {row['error']}")
    if not as_json:
        click.echo(f"{len(letters)} dead letter(s) on route {route_id}", err=True)


@dlq.command("retry")
@config_option
@click.argument("route_id")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "retry_all", is_flag=True, help="Every dead letter of the route.")
@click.option("--reason", default=None, help="Why (recorded with the action).")
@operator_option
def dlq_retry(config_path, route_id, ids, retry_all, reason, operator):
    """Send dead letters of ROUTE_ID again (IDs from `huitong dlq list`, or --all). They get
    the route's full number of attempts again; a running hub picks them up within a second."""
    if bool(ids) == retry_all:
        raise click.UsageError("give dead-letter IDs or --all (not both)")
    _act(config_path, route_id, ids, "RETRIED", reason, operator)


@dlq.command("discard")
@config_option
@click.argument("route_id")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--reason", required=True, help="Why the message will never be delivered (recorded).")
@operator_option
def dlq_discard(config_path, route_id, ids, reason, operator):
    """Give up on dead letters of ROUTE_ID for good, saying why."""
    if not reason.strip():
        raise click.UsageError("--reason must say why")
    _act(config_path, route_id, ids, "DISCARDED", reason, operator)


def _act(config_path, route_id, ids, action, reason, operator):
    settings = _settings(config_path)
    store = _store(settings)
    operator = operator or getpass.getuser()
    letters = store.dead_letters(route_id, ids=list(ids) if ids else None, limit=1_000_000)
    missing = sorted(set(ids) - {d.id for d in letters})
    if missing:
        click.echo(f"not dead letters of route {route_id}: {', '.join(map(str, missing))}", err=True)
    done = store.operator_action(route_id, letters, action=action, by=operator, reason=reason)
    log.info(f"dlq.{action.lower()}", route=route_id, by=operator, reason=reason, count=done,
             dead_letters=[d.id for d in letters])
    verb = "will be retried" if action == "RETRIED" else "discarded"
    click.echo(f"{done} dead letter(s) of route {route_id} {verb} (by {operator})")
    if missing:
        sys.exit(1)


# -- huitong worker ------------------------------------------------------------------------------
@click.command()
@config_option
def worker(config_path):
    """Run route workers only (production: any number of them beside the HTTP hubs, on
    RabbitMQ and PostgreSQL). Stops gracefully on SIGTERM: the batch in hand is finished."""
    settings = _settings(config_path)
    if settings.embedded_broker:
        raise click.ClickException("the in-memory broker lives inside `huitong serve`; a separate worker "
                                   "needs RabbitMQ (broker_url)")
    hub = _hub(settings)
    if not hub.service("routes").routes.enabled():
        raise click.ClickException("no enabled routes (routes.dir)")
    hub.start(relay=False, routes=True, adapters=False)
    click.echo(f"route worker running: {', '.join(r.id for r in hub.service('routes').routes.enabled())}", err=True)
    run_until_stopped(hub)


@click.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="The routes and the health as JSON.")
def status(config_path, as_json):
    """The routes table and the hub's health (database, broker, relay lag, sealing).

    Exits 1 when a health check fails."""
    from routes.status import as_dict, hub_health, route_status
    settings = _settings(config_path)
    engine = engine_for(settings)
    routes = _checked_routes(settings)
    try:
        rows = route_status(engine, routes, settings.broker_url)
    finally:
        routes.close()
    health = hub_health(engine, settings.broker_url, settings.relay.max_lag_seconds)
    if as_json:
        click.echo(json.dumps({"routes": as_dict(rows), "health": health}, ensure_ascii=False, indent=2))
        sys.exit(0 if health["ok"] else 1)

    def shown(value):
        return "-" if value is None else str(value)

    header = f"{'ROUTE':<32} {'STATE':<8} {'MSG/S':>6} {'DELIVERED':>9} {'RETRYING':>8} {'DEAD':>5} {'QUEUE':>6}  LAST ERROR"
    click.echo(header)
    for r in rows:
        state = "disabled" if not r.enabled else "paused" if r.paused else "enabled"
        error = mask_text(r.last_error or "")[:60]
        click.echo(f"{r.id:<32} {state:<8} {r.delivered_per_s:>6} {r.delivered:>9} {r.retrying:>8} {r.dead:>5} "
                   f"{shown(r.queue_depth):>6}  {error}")
    if not rows:
        click.echo("(no routes: messages are logged and published only)")
    click.echo("")
    for name, check in health["checks"].items():
        details = ", ".join(f"{k} {v}" for k, v in check.items() if k != "ok")
        click.echo(f"{name:<9} {'ok' if check['ok'] else 'FAILING'}" + (f"  ({details})" if details else ""))
    sys.exit(0 if health["ok"] else 1)
