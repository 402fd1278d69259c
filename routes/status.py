"""How the routes and the hub stand, for `huitong status` (and the console's overview): per
route its delivery counts, recent rate, last error and queue depth; the hub's health (database,
broker, relay lag, unsealed events). Read-only; a broker that cannot be reached is reported,
not fatal."""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from sqlalchemy import Engine, func, select

from bus.exchange_log import relay_backlog
from bus.models import Event, RouteDelivery, RoutePause
from bus.topology import dead_queue_name, route_queue_name
from routes.deliveries import DEAD, DELIVERED, DISCARDED, RETRY, RETRYING
from routes.loader import RouteSet

RATE_WINDOW = dt.timedelta(seconds=60)


@dataclass
class RouteStatus:
    id: str
    enabled: bool
    destinations: list[str]
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    discarded: int = 0
    delivered_per_s: float = 0.0  # over the last minute
    queue_depth: int | None = None  # None: the broker was not reachable
    dead_queue_depth: int | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    paused: bool = False  # an operator paused it (routes/pausing.py)


def route_status(engine: Engine, routes: RouteSet, broker_url: str | None) -> list[RouteStatus]:
    rows = {r.id: RouteStatus(r.id, r.enabled, [t.name for t in r.targets]) for r in routes.routes.values()}
    since = dt.datetime.now(dt.timezone.utc) - RATE_WINDOW
    with engine.connect() as conn:
        for route, status, count in conn.execute(select(RouteDelivery.route, RouteDelivery.status, func.count())
                                                 .group_by(RouteDelivery.route, RouteDelivery.status)):
            row = rows.get(route)
            if row is None:
                continue
            if status == DELIVERED:
                row.delivered = count
            elif status in (RETRY, RETRYING):
                row.retrying += count
            elif status == DEAD:
                row.dead = count
            elif status == DISCARDED:
                row.discarded = count
        for route, count in conn.execute(select(Event.route, func.count()).where(
                Event.kind == "DELIVERED", Event.at >= since).group_by(Event.route)):
            if route in rows:
                rows[route].delivered_per_s = round(count / RATE_WINDOW.total_seconds(), 1)
        for route in conn.scalars(select(RoutePause.route)):
            if route in rows:
                rows[route].paused = True
        for row in rows.values():
            last = conn.execute(select(RouteDelivery.last_error, RouteDelivery.updated_at)
                                .where(RouteDelivery.route == row.id, RouteDelivery.last_error.is_not(None))
                                .order_by(RouteDelivery.updated_at.desc()).limit(1)).first()
            if last:
                row.last_error, row.last_error_at = last.last_error[:200], last.updated_at.isoformat()
    if broker_url and not broker_url.startswith("memory://"):
        _queue_depths(broker_url, rows)
    return list(rows.values())


def _queue_depths(broker_url: str, rows: dict[str, RouteStatus]) -> None:
    from bus.broker import connect
    try:
        with connect(broker_url) as conn:
            for row in rows.values():
                for name, attribute in ((route_queue_name(row.id), "queue_depth"),
                                        (dead_queue_name(row.id), "dead_queue_depth")):
                    channel = conn.channel()
                    try:  # passive: ask, never create
                        _, depth, _ = channel.queue_declare(name, passive=True)
                        setattr(row, attribute, depth)
                    except Exception:
                        pass  # not declared yet (the route never ran)
                    finally:
                        try:
                            channel.close()
                        except Exception:
                            pass
    except Exception:
        return  # unreachable: depths stay unknown


def hub_health(engine: Engine, broker_url: str, max_lag_seconds: float) -> dict:
    from replay.chain import chain_head  # (replay builds on routes; only this reads the other way)
    checks: dict = {}
    now = dt.datetime.now(dt.timezone.utc)
    try:
        with engine.connect() as conn:
            unpublished, oldest = relay_backlog(conn)
            top = conn.scalar(select(func.max(Event.seq))) or 0
            head = chain_head(conn)
        lag = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
        checks["database"] = {"ok": True}
        checks["relay"] = {"ok": lag <= max_lag_seconds, "lag_seconds": round(lag, 1), "unpublished": unpublished}
        checks["sealing"] = {"ok": True, "unsealed_events": max(0, top - (head.next_seq - 1)),
                             "last_seal_at": head.sealed_at.isoformat() if head.sealed_at else None}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": exc.__class__.__name__}
    if broker_url.startswith("memory://"):
        checks["broker"] = {"ok": True, "note": "in-memory (embedded): lives inside `huitong serve`"}
    else:
        from bus.broker import connect
        try:
            with connect(broker_url) as conn:
                conn.ensure_connection(max_retries=1)
            checks["broker"] = {"ok": True}
        except Exception as exc:
            checks["broker"] = {"ok": False, "error": exc.__class__.__name__}
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}


def as_dict(rows: list[RouteStatus]) -> list[dict]:
    return [asdict(r) for r in rows]
