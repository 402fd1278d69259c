"""Configuration: one YAML file plus HUITONG_* environment overrides, validated at start.
`database_url` and `broker_url` are the only switch between embedded and production."""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bus.errors import ConfigError

DEFAULT_STATE_DIR = "var"
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
BROKER_SCHEMES = ("memory", "amqp", "amqps", "pyamqp")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    threads: int = Field(8, ge=1, le=256)
    # The TLS-terminating proxy in front of `huitong serve`, whose X-Forwarded-Proto (https) is
    # believed (waitress drops the header from anyone else); empty: believe no one.
    trusted_proxy: str = "127.0.0.1"


class XmlSettings(Section):
    max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_depth: int = Field(64, ge=4, le=250)
    max_elements: int = Field(20_000, ge=10)


class LogStoreSettings(Section):
    """Group commit of the exchange log: how many acceptances share one transaction."""
    max_batch: int = Field(500, ge=1, le=10_000)
    # Under load (the last commit held more than one acceptance) the committer waits this long
    # after the first acceptance for more to join the commit: fewer, larger transactions, each
    # costing the database and the committer about the same however many rows it holds.
    # Measured on the 2-core VM, SOAP pushes under uvicorn: 3.2 -> 5-6 acceptances a commit,
    # CPU per push -7 to -15 %, accepted/s +5 to +10 % at 0.0005-0.001 s. A lone acceptance
    # on a quiet hub never waits.
    commit_linger_seconds: float = Field(0.001, ge=0, le=5)
    # Write durability for SQLite: FULL survives power loss, NORMAL only process crashes.
    sqlite_synchronous: str = Field("FULL", pattern="^(FULL|NORMAL)$")


class RelaySettings(Section):
    enabled: bool = True
    batch_size: int = Field(500, ge=1, le=10_000)
    poll_interval: float = Field(0.5, gt=0, le=60)
    confirm_timeout: float = Field(30.0, gt=0, le=600)
    # After a batch that was not full the relay waits this long before the next, so under load
    # the messages of many group commits share one transaction and one confirm round (measured
    # on the 2-core VM: SOAP pushes +24 % at 0.05 s). An idle relay still sends at once; under
    # load a message waits up to this long for its publish.
    linger_seconds: float = Field(0.05, ge=0, le=5)
    # The log scan leaves messages younger than this to the relay of the process that accepted
    # them; after a crash, recovery starts this much later.
    scan_grace_seconds: float = Field(5.0, ge=0, le=600)
    # /readyz reports not ready when the oldest unpublished message waited longer.
    max_lag_seconds: float = Field(60.0, gt=0)


class SoapSettings(Section):
    """The department Web Service interface (/ws/exchange)."""
    # The whole SOAP request; the canonical envelope inside is also held to xml.max_bytes.
    max_request_bytes: int = Field(6 * 1024 * 1024, ge=4096)
    # WS-Security Created must lie within this many seconds of the hub's clock.
    created_tolerance_seconds: int = Field(300, ge=1, le=86_400)
    # PasswordText sends the secret itself: only over TLS unless this says otherwise.
    allow_password_text: bool = False
    # Requests per second per system (token bucket per worker process; burst = 2 s worth).
    rate_limit_per_system: float = Field(200.0, gt=0)
    # How long a change made with `huitong systems` may take to reach a running hub.
    registry_cache_seconds: float = Field(5.0, ge=0, le=300)
    # Pushes straight from the parsed request to the canonical message (adapters.soap.fast_push);
    # off, spyne deserialises and serialises them like the other operations.
    fast_push: bool = True


class SystemSeed(Section):
    """A system registered at start if the database does not know it yet."""
    id: str
    name: str
    secret: str | None = None
    secret_env: str | None = None  # name of an environment variable holding the secret
    grants: list[str] = []


class RoutesSettings(Section):
    """Route files and the workers that run them."""
    # Directory of route files (*.yaml); empty: no routes, messages are logged and published only.
    dir: str = ""
    # This process consumes the route queues (serve, the WSGI app); `huitong worker` always does.
    run: bool = True
    threads: int = Field(1, ge=1, le=64)  # worker threads, each with its own broker connection
    prefetch: int = Field(400, ge=1, le=10_000)
    batch_size: int = Field(200, ge=1, le=5_000)
    batch_wait: float = Field(0.05, gt=0, le=10)
    retry_poll_interval: float = Field(0.5, gt=0, le=60)
    # A retry handed to the route queue is handed again if not settled within this time.
    retry_lease_seconds: float = Field(120.0, ge=1)
    # A message published this long ago that a route never recorded is sent to it again (the
    # broker lost it); longer than the deepest backlog a route queue is expected to hold.
    redrive_after_seconds: float = Field(60.0, ge=1)


class InboxSettings(Section):
    """One inbox directory of one department system (adapters.filedrop)."""
    system: str  # the system the records come from; its envelopes' Source must be this
    dir: str
    # canonical: Huitong envelopes (one, or an hx:Batch of them); xml: department XML turned
    # into canonical bodies by `xslt`; csv: rows turned into canonical bodies by `mapping`.
    format: str = Field("canonical", pattern="^(canonical|xml|csv)$")
    mapping: str = ""  # csv: a mapping file (adapters/mappings/*.yaml or a path)
    xslt: str = ""  # xml: a stylesheet producing canonical bodies
    # csv text encoding, and xml without an XML declaration; the declaration wins otherwise.
    encoding: str = Field("utf-8", pattern="(?i)^(utf-8|utf8|gbk|gb18030|gb2312)$")
    # quiet: taken once size and mtime stayed unchanged for settle_seconds; marker: taken only
    # once NAME.done exists beside it (the safe choice for writers that pause).
    complete: str = Field("quiet", pattern="^(quiet|marker)$")
    settle_seconds: float = Field(5.0, ge=0, le=3600)
    include: list[str] = ["*"]
    exclude: list[str] = ["*.tmp", "*.part", "*.partial", "~*"]
    max_file_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    # .gz and .zip are read only when this is on, and never past max_decompressed_bytes.
    compressed: bool = False
    max_decompressed_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    # A claim left by a process on another host is taken over after this long without news.
    claim_timeout_seconds: float = Field(600.0, ge=5)


class FrontDbTable(Section):
    mapping: str  # adapters/mappings/*.yaml or a path; names the columns and the message type
    # The table's key column(s): claims and write-backs address rows by them.
    key: list[str] = Field(min_length=1)


class FrontDbSettings(Section):
    """One front database (前置库) of one department system (adapters.frontdb)."""
    system: str
    url: str
    tables: dict[str, FrontDbTable] = Field(min_length=1)  # table name -> how to read it
    poll_interval: float = Field(2.0, gt=0, le=3600)
    batch_size: int = Field(500, ge=1, le=10_000)
    # syncerrormsg is cut to this many characters (the practice tables use VARCHAR2(1000)).
    error_text_max: int = Field(1000, ge=20)


class AdapterSettings(Section):
    """The file-drop and front-database adapters of this process."""
    run: bool = True  # this process watches the inboxes and polls the front databases
    file_workers: int = Field(2, ge=1, le=64)  # files processed at once, over all inboxes
    poll_interval: float = Field(2.0, gt=0, le=600)  # inbox rescan; file events wake it earlier
    watch: bool = True  # inotify (watchdog) wake-ups; polling alone when off or unavailable
    records_per_commit: int = Field(500, ge=1, le=10_000)
    # Back pressure: no new file or front-database batch is taken while this many accepted
    # messages wait for the relay (the broker is slow or away).
    max_unpublished: int = Field(100_000, ge=100)


class CatalogSettings(Section):
    """The shared registries (catalog/)."""
    # Per registry and field, the systems authoritative for it, most authoritative first
    # (fnmatch patterns); merged over the shipped catalog/authority.yaml.
    authority: dict[str, dict[str, list[str]]] = {}
    # Longest answer of a name search (REST, SOAP, CLI).
    max_search_results: int = Field(100, ge=1, le=10_000)
    # The REST API takes HTTP Basic credentials (system id and secret) only over TLS
    # (https, or a proxy's X-Forwarded-Proto: https), unless this allows plain HTTP.
    allow_http: bool = False


class AuditSettings(Section):
    """The sealed chain over the exchange log (replay/)."""
    seal: bool = True  # this process seals new events in the background
    seal_interval: float = Field(1.0, gt=0, le=3600)
    seal_max_events: int = Field(10_000, ge=1, le=1_000_000)  # per seal
    # A seq not yet visible holds sealing back this long (a commit still in flight), then it is
    # recorded as skipped (a rolled-back transaction).
    gap_wait_seconds: float = Field(10.0, ge=0, le=3600)
    # `huitong audit retain` without --before archives and removes what is older than this many
    # days (0: keep everything), into archive_dir (default: <state_dir>/archive).
    retention_days: int = Field(0, ge=0)
    archive_dir: str = ""
    # The log API (/api/v1/log) takes HTTP Basic credentials only over TLS unless this allows
    # plain HTTP (a trusted network, the demo).
    allow_http: bool = False


class ConsoleSettings(Section):
    """The operator console at / (console/): sign-in sessions."""
    session_idle_minutes: int = Field(30, ge=1, le=24 * 60)  # signed out after this long unused
    session_max_hours: int = Field(12, ge=1, le=24 * 7)  # and after this long in any case
    # Failed sign-ins of one user within 15 minutes before its sign-in is refused for a while.
    max_failed_logins: int = Field(5, ge=1, le=100)
    # Sign-in is taken over https (the cookie then marked Secure) or from this machine itself
    # (127.0.0.1, the embedded default); this lets plain HTTP from other hosts through.
    allow_http: bool = False
    # /metrics answers a Prometheus that sends `Authorization: Bearer <the value of this
    # environment variable>` (or a signed-in console user); anyone else gets 401.
    metrics_token_env: str = "HUITONG_METRICS_TOKEN"


class SupervisionSettings(Section):
    """Electronic supervision (supervision/): how cases are clocked and coloured."""
    # The working calendar (YAML: holidays and adjusted working days per year); empty:
    # weekends only. supervision/calendars/ has a sample to copy and check.
    calendar: str = ""
    timezone: str = "Asia/Shanghai"  # the zone whose dates count
    # Yellow when at most this many working days remain, or this share of the limit is
    # used, whichever comes first; red the day after the deadline.
    yellow_remaining_days: int = Field(1, ge=0, le=365)
    yellow_used_ratio: float = Field(0.8, gt=0, le=1)
    # A result or step with no acceptance waits this long for a late acceptance before it
    # is raised as an anomaly.
    anomaly_grace_minutes: float = Field(30.0, ge=0, le=7 * 24 * 60)
    # The system id alerts are sent as (SupervisionAlert messages), e.g. 320382.huitong.jiancha.
    alert_source: str = Field("", pattern=r"^$|^[0-9]{6}\.[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_]{0,31}$")
    sweep_interval_seconds: float = Field(60.0, gt=0, le=3600)  # recolouring as days pass

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (e.g. Asia/Shanghai)") from None
        return value


class FederationSettings(Section):
    """Federation over RabbitMQ (federation/): the hubs whose shovels feed this hub's in-queues
    (huitong.federation.in.<id>); each must be registered here as a system, with FORWARD."""
    inbound: list[str] = []

    @field_validator("inbound")
    @classmethod
    def _system_ids(cls, value: list[str]) -> list[str]:
        import re
        bad = [v for v in value if not re.fullmatch(r"[0-9]{6}\.[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_]{0,31}", v)]
        if bad:
            raise ValueError(f"not system ids (<region>.<department>.<system>): {', '.join(bad)}")
        return value


class LoggingSettings(Section):
    level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    format: str = Field("auto", pattern="^(auto|json|console)$")


class Settings(Section):
    database_url: str = ""
    # Upgrade the database schema at start; with false the hub refuses an old schema.
    auto_upgrade: bool = True
    broker_url: str = "memory://"
    state_dir: str = DEFAULT_STATE_DIR
    http: HttpSettings = HttpSettings()
    xml: XmlSettings = XmlSettings()
    log_store: LogStoreSettings = LogStoreSettings()
    relay: RelaySettings = RelaySettings()
    logging: LoggingSettings = LoggingSettings()
    soap: SoapSettings = SoapSettings()
    routes: RoutesSettings = RoutesSettings()
    # Named destinations routes deliver to: {name: {type: soap|filedrop|hub|..., options...}}.
    destinations: dict[str, dict[str, Any]] = {}
    systems: list[SystemSeed] = []
    adapters: AdapterSettings = AdapterSettings()
    inboxes: dict[str, InboxSettings] = {}  # name -> inbox directory of a department system
    frontdb: dict[str, FrontDbSettings] = {}  # name -> front database of a department system
    catalog: CatalogSettings = CatalogSettings()
    audit: AuditSettings = AuditSettings()
    console: ConsoleSettings = ConsoleSettings()
    supervision: SupervisionSettings = SupervisionSettings()
    federation: FederationSettings = FederationSettings()
    # Key that encrypts system secrets at rest (Fernet, urlsafe base64 of 32 bytes). Empty: a key
    # file under state_dir is created on first use; several hosts must share one key.
    secret_key: str = ""

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        if value:
            _check_scheme(value, DATABASE_SCHEMES, "database_url")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        _check_scheme(value, BROKER_SCHEMES, "broker_url")
        return value

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.state_dir) / 'huitong.db'}"

    @property
    def secret_key_file(self) -> Path:
        return Path(self.state_dir) / "secret.key"

    @property
    def embedded_broker(self) -> bool:
        """The in-memory transport forgets everything when the process ends."""
        return self.broker_url.startswith("memory://")


def _check_scheme(url: str, allowed: tuple[str, ...], name: str) -> None:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in allowed:
        guess = difflib.get_close_matches(scheme, allowed, n=1)
        hint = f"; did you mean {guess[0]}://?" if guess else ""
        raise ValueError(f"{name} scheme {scheme or url!r} is not one of {', '.join(allowed)}{hint}")


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """HUITONG_DATABASE_URL=... and nested HUITONG_HTTP__PORT=9090 become config keys."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        # HUITONG_TEST_* and HUITONG_BENCH_* belong to the test suite and the benchmarks,
        # HUITONG_SAMPLE_* to the demo configuration's secrets, HUITONG_METRICS_TOKEN is the
        # default holder of /metrics' bearer token (console.metrics_token_env).
        if not key.startswith("HUITONG_") or key.startswith(("HUITONG_TEST_", "HUITONG_BENCH_", "HUITONG_SAMPLE_")) \
                or key in ("HUITONG_CONFIG", "HUITONG_METRICS_TOKEN"):
            continue
        path = key[len("HUITONG_"):].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(path: str | os.PathLike | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    environ = dict(os.environ if environ is None else environ)
    path = path or environ.get("HUITONG_CONFIG")
    source = "defaults"
    data: dict[str, Any] = {}
    if path:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of settings")
        data = loaded or {}
    data = _merge(data, _env_overrides(environ))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source)) from None


def _explain(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source} and HUITONG_* variables):"]
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top)"
        text = error["msg"]
        if error["type"] == "extra_forbidden":
            known = _known_keys(error["loc"][:-1])
            guess = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
            text = "unknown setting" + (f"; did you mean {guess[0]}?" if guess else
                                        f"; known: {', '.join(sorted(known))}")
        lines.append(f"  {where}: {text}")
    return "\n".join(lines)


def _known_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = Settings
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return list(model.model_fields)
