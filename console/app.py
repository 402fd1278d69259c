"""The operator console: server-rendered pages at / and the JSON API behind them at
/api/v1/console, on one sign-in (a session cookie). Deny by default: every path but /login and
the static files needs a live session (pages redirect to /login, the API answers 401); every
POST needs the session's CSRF token (a form field, or the X-CSRF-Token header); what a role may
not do is neither offered on the page nor done by the API."""
from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import json
import mimetypes
import secrets
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from bus.errors import HuitongError
from bus.logs import get_logger
from bus.masking import mask_text
from bus.times import BEIJING, parse_moment
from console.board import Board
from console.openapi import openapi
from console.sessions import COOKIE, Session, SessionStore
from console.users import ACT, ADMIN, AUDIT, ROLES, UserError, UserStore
from replay.lineage import LogSearch

log = get_logger("huitong.console")
HERE = Path(__file__).parent
API = "/api/v1/console"
LOGIN_CSRF_COOKIE = "huitong_login_csrf"
SEARCH_FIELDS = ("since", "until", "system", "route", "type", "status", "case_number", "uscc", "citizen_id",
                 "project_code")
STATUS = {"NOT_FOUND": 404, "FORBIDDEN": 403, "CSRF_FAILED": 403, "UNAUTHENTICATED": 401,
          "SESSION_EXPIRED": 401, "LOGIN_FAILED": 401, "LOGIN_LOCKED": 429, "ALREADY_EXISTS": 409}


MAX_REQUEST_BYTES = 1024 * 1024  # a console form or JSON body; more is refused unread (413)


class Refused(HuitongError):
    """An answer other than 200, with its stable code."""


class ConsoleRequest(Request):
    max_content_length = MAX_REQUEST_BYTES
    max_form_memory_size = MAX_REQUEST_BYTES


def _rules() -> Map:
    pages = [("/", "overview"), ("/login", "login"), ("/logout", "logout"), ("/routes", "routes"),
             ("/routes/<route>/pause", "pause"), ("/routes/<route>/resume", "resume"), ("/systems", "systems"),
             ("/systems/<system_id>/enabled", "system_enabled"), ("/dead-letters", "dead_letters"),
             ("/dead-letters/<int:letter_id>", "dead_letter"), ("/dead-letters/act", "act"),
             ("/messages", "messages"), ("/messages/<message_id>", "lineage"), ("/cases/<case_number>", "case"),
             ("/cases/<case_number>/export", "export"), ("/cases/<case_number>/replay", "replay"),
             ("/audit", "audit"), ("/audit/verify", "verify"), ("/supervision", "supervision"), ("/users", "users"), ("/users/<username>", "user"),
             ("/static/<name>", "static")]
    rules = [Rule(path, endpoint=endpoint) for path, endpoint in pages]
    rules += [Rule(API + (path if path != "/" else "/overview"), endpoint="api_" + endpoint) for path, endpoint in pages
              if endpoint not in ("login", "logout", "static")]
    rules.append(Rule(API + "/openapi.json", endpoint="openapi"))
    return Map(rules, strict_slashes=False)


class ConsoleApp:
    def __init__(self, hub, board: Board):
        self.hub = hub
        self.board = board
        settings = hub.settings.console
        self.settings = settings
        self.users = UserStore(hub.engine)
        self.sessions = SessionStore(hub.engine, idle=dt.timedelta(minutes=settings.session_idle_minutes),
                                     max_age=dt.timedelta(hours=settings.session_max_hours))
        self.url_map = _rules()
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
        self.templates.filters.update(mask=lambda v: mask_text(str(v)) if v is not None else "",
                                      when=_when, pct=_pct, chart=_chart, qs=lambda d: urlencode({k: v for k, v in d.items() if v}))

    # -- WSGI -----------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        request = ConsoleRequest(environ)
        api = request.path.startswith(API)
        try:
            endpoint, args = self.url_map.bind_to_environ(environ).match()
            response = self.dispatch(request, endpoint, args, api)
        except Refused as refused:
            response = self._refused(request, refused, api)
        except HuitongError as exc:  # bad input the board or a store named
            response = self._refused(request, Refused(str(exc), code=exc.code), api)
        except NotFound:
            response = self._refused(request, Refused(f"no page {request.path}", code="NOT_FOUND"), api)
        except HTTPException as exc:
            response = self._refused(request, Refused(exc.description or exc.name, code="BAD_REQUEST"), api)
            response.status_code = exc.code or 400
        _harden(response)
        return response(environ, start_response)

    def dispatch(self, request: Request, endpoint: str, args: dict, api: bool) -> Response:
        if endpoint == "static":
            return self._static(args["name"])
        if endpoint == "openapi":
            return _json(openapi())
        if endpoint in ("login", "logout"):
            return getattr(self, endpoint)(request)
        session = self.sessions.find(request.cookies.get(COOKIE))
        if session is None:
            if api:
                raise Refused("sign in to the console first (POST /login); the session may have expired",
                              code="UNAUTHENTICATED")
            return redirect("/login?" + urlencode({"next": request.full_path.rstrip("?")}), 303)
        if request.method == "POST":
            given = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token")
            if not session.csrf_ok(given):
                log.warning("console.csrf_refused", user=session.user.username, path=request.path)
                raise Refused("the CSRF token is missing or wrong: reload the page and try again", code="CSRF_FAILED")
        elif request.method not in ("GET", "HEAD"):
            raise Refused(f"{request.method} is not used here", code="BAD_REQUEST")
        name = endpoint[4:] if api else endpoint
        data, template = getattr(self, f"_{name}")(request, session, **args)
        if isinstance(data, Response):
            return data
        if api:
            return _json(data)
        if template is None:  # an action from a form: back to where it came from
            return redirect(_safe_next(request.form.get("next")) or "/", 303)
        return self._page(template, session, data, request)

    # -- sign in and out ------------------------------------------------------------------------
    def login(self, request: Request) -> Response:
        next_page = _safe_next(request.values.get("next")) or "/"
        if request.method == "GET":
            token = secrets.token_urlsafe(24)
            response = self._render("login.html", {"next": next_page, "csrf_token": token, "error": None})
            response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", path="/login",
                                secure=_secure(request))
            return response
        if request.method != "POST":
            raise Refused("GET or POST", code="BAD_REQUEST")
        cookie, form = request.cookies.get(LOGIN_CSRF_COOKIE), request.form.get("csrf_token")
        if not cookie or not form or not hmac.compare_digest(cookie, form):
            raise Refused("the sign-in form's CSRF token is missing or wrong: reload the page", code="CSRF_FAILED")
        if not _secure(request) and not _local(request) and not self.settings.allow_http:
            raise Refused("sign-in is taken over https only (console.allow_http lets plain HTTP through on a "
                          "trusted network)", code="FORBIDDEN")
        username = request.form.get("username", "").strip().lower()
        password = request.form.get("password", "")
        if self.board.failed_logins(username) >= self.settings.max_failed_logins:
            self.board.record_login(username, False, request.remote_addr)
            return self._login_failed(next_page, "Too many failed sign-ins of this user: wait 15 minutes.", 429)
        user = self.users.authenticate(username, password)
        if user is None:
            self.board.record_login(username, False, request.remote_addr)
            return self._login_failed(next_page, "Wrong user name or password (or the user is disabled).", 401)
        token, _ = self.sessions.open(user)
        self.board.record_login(username, True, request.remote_addr)
        response = redirect(next_page, 303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=_secure(request), path="/",
                            max_age=self.settings.session_max_hours * 3600)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    def _login_failed(self, next_page: str, text: str, status: int) -> Response:
        token = secrets.token_urlsafe(24)
        response = self._render("login.html", {"next": next_page, "csrf_token": token, "error": text}, status)
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", path="/login")
        return response

    def logout(self, request: Request) -> Response:
        token = request.cookies.get(COOKIE)
        session = self.sessions.find(token)
        if request.method != "POST" or session is None or not session.csrf_ok(request.form.get("csrf_token")):
            raise Refused("sign out with the page's Sign out button", code="CSRF_FAILED")
        self.sessions.close(token)
        response = redirect("/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- pages: each returns (data, template) ---------------------------------------------------
    def _overview(self, request, session):
        return self.board.overview(), "overview.html"

    def _routes(self, request, session):
        return {"routes": self.board.route_rows()}, "routes.html"

    def _pause(self, request, session, route):
        _need(session, ACT)
        done = self.board.pause(session.user, route, _reason(request))
        return {"route": route, "paused": True, "changed": done}, None

    def _resume(self, request, session, route):
        _need(session, ACT)
        done = self.board.resume(session.user, route, _reason(request) or None)
        return {"route": route, "paused": False, "changed": done}, None

    def _systems(self, request, session):
        return {"systems": self.board.systems()}, "systems.html"

    def _system_enabled(self, request, session, system_id):
        _need(session, ADMIN)
        enabled = _field(request, "enabled") in ("true", "1", "on", True)
        self.board.set_system_enabled(session.user, system_id, enabled, _reason(request))
        return {"system": system_id, "enabled": enabled}, None

    def _dead_letters(self, request, session):
        route = request.args.get("route") or None
        return {"route": route, "routes": sorted(self.board.routes.routes),
                "letters": self.board.dead_letters(route)}, "dead_letters.html"

    def _dead_letter(self, request, session, letter_id):
        return {"letter": self.board.dead_letter(letter_id)}, "dead_letter.html"

    def _act(self, request, session):
        _need(session, ACT)
        action = {"retry": "RETRIED", "discard": "DISCARDED"}.get(str(_field(request, "action")))
        if action is None:
            raise Refused("action must be retry or discard", code="VALUE_INVALID")
        ids = _ids(request)
        outcome = self.board.act(session.user, ids, action, _reason(request) or None)
        log.info("console.dead_letters", action=action, by=session.user.username, ids=ids, done=outcome["done"])
        return outcome, None

    def _messages(self, request, session):
        """GET from links (a system, a case), POST from the search form: a citizen id typed in
        stays out of URLs, server logs and browser history, and is shown back masked."""
        given = {k: str(request.values.get(k, "")).strip() for k in SEARCH_FIELDS}
        result, error = None, None
        if any(given.values()):
            try:
                criteria = LogSearch(**{k: (parse_moment(v) if k in ("since", "until") else v) if v else None
                                        for k, v in given.items()})
                after = request.values.get("after")
                result = self.board.search(session.user, criteria, after=int(after) if after else None,
                                           limit=200 if criteria.citizen_id else 50)
            except ValueError as exc:
                error = f"VALUE_INVALID: not a time: {exc}"
            except HuitongError as exc:
                error = f"{exc.code}: {exc}"
            if error and request.path.startswith(API):
                raise Refused(error, code="VALUE_INVALID")
        paging = not given["citizen_id"]
        given["citizen_id"] = mask_text(given["citizen_id"])
        return {"criteria": given, "result": result, "error": error, "paging": paging}, "messages.html"

    def _lineage(self, request, session, message_id):
        return self.board.lineage(session.user, message_id, request.args.get("source") or None), "lineage.html"

    def _case(self, request, session, case_number):
        return self.board.case(session.user, case_number), "case.html"

    def _export(self, request, session, case_number):
        _need(session, AUDIT)
        if request.method != "POST":
            raise Refused("export with the case page's button (POST)", code="BAD_REQUEST")
        name, data = self.board.export_case(session.user, case_number)
        response = Response(data, mimetype="application/zip")
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return response, None

    def _replay(self, request, session, case_number):
        _need(session, AUDIT)
        if request.method != "POST":
            raise Refused("replay with the case page's form (POST)", code="BAD_REQUEST")
        reason = _reason(request)
        if not reason:
            raise Refused("say why (reason): a replay is recorded with its reason", code="VALUE_INVALID")
        report = self.board.replay_case(session.user, case_number, str(_field(request, "mode") or "dry-run"), reason)
        return report, "replay.html"

    def _audit(self, request, session):
        return self.board.audit(), "audit.html"

    def _supervision(self, request, session):
        """Electronic supervision per department: open cases by colour, overdue and nearly due
        cases, anomalies (empty when no supervision destination is configured)."""
        store = self.hub.service("supervision").store
        department = request.args.get("department") or None
        if store is None:
            return {"configured": False, "department": department}, "supervision.html"
        return {"configured": True, "department": department, "departments": store.by_department(),
                "overdue": store.overdue(department=department, limit=100),
                "nearly_due": store.overdue(department=department, colour="YELLOW", limit=100),
                "anomalies": store.anomalies(department=department, limit=100)}, "supervision.html"

    def _verify(self, request, session):
        started = self.board.verify_now(session.user)
        return {"started": started}, None

    def _users(self, request, session):
        _need(session, ADMIN)
        if request.method == "POST":
            username = str(_field(request, "username") or "").strip().lower()
            self.users.add(username, str(_field(request, "role") or ""), str(_field(request, "password") or ""),
                           by=session.user.username)
            return {"added": username}, None
        return {"users": [vars(u) for u in self.users.list()], "roles": list(ROLES)}, "users.html"

    def _user(self, request, session, username):
        _need(session, ADMIN)
        if request.method != "POST":
            user = self.users.get(username)
            if user is None:
                raise Refused(f"no user {username}", code="NOT_FOUND")
            return (vars(user), None) if request.path.startswith(API) else (redirect("/users", 303), None)
        by = session.user.username
        if _field(request, "role"):
            self.users.set_role(username, str(_field(request, "role")), by=by)
        if _field(request, "enabled") is not None:
            enabled = _field(request, "enabled") in ("true", "1", "on", True)
            if not enabled and username == by:
                raise UserError("you cannot disable yourself")
            self.users.set_enabled(username, enabled, by=by)
            if not enabled:
                self.sessions.close_all(username)
        if _field(request, "password"):
            self.users.set_password(username, str(_field(request, "password")), by=by)
        return {"user": username, "changed": True}, None

    # -- rendering ------------------------------------------------------------------------------
    def _page(self, template: str, session: Session, data: dict, request: Request) -> Response:
        user = session.user
        return self._render(template, {**data, "data": data, "user": user, "csrf_token": session.csrf_token,
                                       "may_act": user.may(ACT), "may_audit": user.may(AUDIT),
                                       "may_admin": user.may(ADMIN), "path": request.path,
                                       "full_path": request.full_path.rstrip("?"),
                                       "idle_minutes": self.settings.session_idle_minutes})

    def _render(self, template: str, context: dict, status: int = 200) -> Response:
        body = self.templates.get_template(template).render(**context)
        return Response(body, status=status, mimetype="text/html")

    def _refused(self, request: Request, refused: Refused, api: bool) -> Response:
        status = STATUS.get(refused.code, 400)
        if api or request.path.startswith(API):
            return _json({"error": {"code": refused.code, "text": str(refused)}}, status)
        return self._render("error.html", {"code": refused.code, "text": str(refused), "status": status}, status)

    def _static(self, name: str) -> Response:
        path = HERE / "static" / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise NotFound()
        response = Response(path.read_bytes(), mimetype=mimetypes.guess_type(name)[0] or "application/octet-stream")
        response.headers["Cache-Control"] = "public, max-age=300"
        return response


# -- helpers ---------------------------------------------------------------------------------------
def _need(session: Session, permission: str) -> None:
    if not session.user.may(permission):
        raise Refused(f"the {session.user.role} role may not do this (needs {permission})", code="FORBIDDEN")


def _field(request: Request, name: str):
    if request.is_json:
        return (request.get_json(silent=True) or {}).get(name)
    return request.form.get(name)


def _reason(request: Request) -> str:
    return str(_field(request, "reason") or "").strip()


def _ids(request: Request) -> list[int]:
    raw = (request.get_json(silent=True) or {}).get("ids", []) if request.is_json else request.form.getlist("ids")
    try:
        return [int(i) for i in raw]
    except (TypeError, ValueError):
        raise Refused("ids must be dead-letter numbers", code="VALUE_INVALID") from None


def _safe_next(value: str | None) -> str | None:
    """Only a path of this site (never //host or a scheme): no open redirect."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return None


def _secure(request: Request) -> bool:
    return request.scheme == "https" or request.headers.get("X-Forwarded-Proto") == "https"


def _local(request: Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _json(payload, status: int = 200) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, default=str), status=status, mimetype="application/json")


def _harden(response: Response) -> None:
    response.headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; form-action 'self'")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")


def _when(value) -> str:
    """An ISO time as Beijing time, to the second."""
    if not value:
        return "—"
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _chart(series: list[dict]):
    """Messages in, out and rejected per minute as an inline SVG (numbers only, no script)."""
    from markupsafe import Markup
    width, height, pad = 600, 160, 24
    top = max([1] + [max(p["in"], p["out"], p["rejected"]) for p in series])
    step = (width - pad) / max(1, len(series) - 1)

    def line(key: str) -> str:
        return " ".join(f"{pad + i * step:.1f},{height - pad - (p[key] / top) * (height - 2 * pad):.1f}"
                        for i, p in enumerate(series))
    labels = "".join(f'<text x="{pad + i * step:.1f}" y="{height - 6}">{p["minute"]}</text>'
                     for i, p in enumerate(series) if i % 10 == 0)
    return Markup(f'<svg class="chart" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
                  f'aria-label="messages per minute"><text x="0" y="12">{top}/min</text>'
                  f'<polyline class="in" points="{line("in")}"/><polyline class="out" points="{line("out")}"/>'
                  f'<polyline class="rej" points="{line("rejected")}"/>{labels}</svg>')


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def mount(hub):
    """Entry point: the console at / and the Prometheus metrics at /metrics."""
    from console.metrics import metrics_app
    from console.pulse import Pulse
    routes = hub.service("routes").routes
    pulse = Pulse(hub.engine).start()
    hub.on_stop.append(pulse.stop)
    board = Board(hub, routes, pulse)
    hub.on_stop.append(board.close)
    if UserStore(hub.engine).count() == 0:
        log.warning("console.no_users", hint="nobody can sign in to the console at / yet: "
                    "huitong users add NAME --role admin (or try huitong serve --demo)")
    console = ConsoleApp(hub, board)
    return [("/", console), ("/metrics", _metrics_guard(hub, metrics_app(board), console.sessions))]


def _metrics_guard(hub, app, sessions: SessionStore):
    """/metrics for a Prometheus that sends the bearer token of console.metrics_token_env, or a
    signed-in console user; 401 for anyone else."""
    import os

    def guarded(environ, start_response):
        request = Request(environ)
        given = request.headers.get("Authorization", "")
        token = os.environ.get(hub.settings.console.metrics_token_env or "", "")
        if (token and hmac.compare_digest(given, f"Bearer {token}")) or sessions.find(request.cookies.get(COOKIE)):
            return app(environ, start_response)
        response = _json({"error": {"code": "UNAUTHENTICATED", "text": "send the bearer token of "
                                    "console.metrics_token_env, or sign in to the console"}}, 401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="huitong"'
        return response(environ, start_response)
    return guarded

