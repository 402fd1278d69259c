"""`huitong systems …`: register department systems, grant message types, disable, rotate
secrets. Secrets are never printed back, except a generated one, once."""
from __future__ import annotations

import json

import click

from bus.errors import HuitongError
from bus.systems import GRANTS

config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                             help="YAML configuration file (default: $HUITONG_CONFIG, else the embedded default).")
grant_option = click.option("--grant", "grants", multiple=True, type=click.Choice(list(GRANTS)),
                            help="A message type the system may send, FORWARD (another hub), or a registry "
                                 "it may read (READ_ENTERPRISE, READ_PERSON, READ_PROJECT, READ_SERVICE_ITEM; "
                                 "UNMASK shows ids and phones whole); repeat for several.")


def _registry(config_path):
    from bus.cli_common import _settings
    from bus.database import ensure_schema, make_engine
    from bus.secret_box import SecretBox
    from bus.systems import SystemRegistry

    settings = _settings(config_path)
    engine = make_engine(settings.effective_database_url)
    try:
        ensure_schema(engine, auto_upgrade=settings.auto_upgrade)
        return SystemRegistry(engine, SecretBox.from_settings(settings))
    except HuitongError as exc:
        raise click.ClickException(str(exc)) from None


def _run(action):
    try:
        return action()
    except HuitongError as exc:
        raise click.ClickException(str(exc)) from None


def _describe(system) -> dict:
    return {"id": system.id, "name": system.name, "enabled": system.enabled, "grants": sorted(system.grants),
            "created_at": system.created_at.isoformat(timespec="seconds"),
            "updated_at": system.updated_at.isoformat(timespec="seconds")}


@click.group()
def systems():
    """Department systems that may connect (X-Road style ids: <region>.<department>.<system>)."""


@systems.command("add")
@config_option
@click.argument("system_id")
@click.option("--name", required=True, help="What people call the system, e.g. 邳州市市场监管局 登记系统.")
@click.option("--secret", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The system's WS-Security password (asked for when not given; at least 12 characters).")
@grant_option
def add(config_path, system_id, name, secret, grants):
    """Register SYSTEM_ID. Without --grant it can connect but send nothing (deny by default)."""
    registry = _registry(config_path)
    system = _run(lambda: registry.add(system_id, name=name, secret=secret, grants=grants))
    click.echo(f"registered {system.id}  grants: {', '.join(sorted(system.grants)) or 'none'}")


@systems.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per system.")
def list_(config_path, as_json):
    """List registered systems (never their secrets)."""
    for system in _registry(config_path).list():
        if as_json:
            click.echo(json.dumps(_describe(system), ensure_ascii=False))
        else:
            state = "enabled " if system.enabled else "DISABLED"
            click.echo(f"{system.id:<32} {state}  {system.name}  [{', '.join(sorted(system.grants)) or 'no grants'}]")


@systems.command("show")
@config_option
@click.argument("system_id")
def show(config_path, system_id):
    """Show one system (never its secret)."""
    system = _registry(config_path).get(system_id, fresh=True)
    if system is None:
        raise click.ClickException(f"no system {system_id} is registered")
    for key, value in _describe(system).items():
        click.echo(f"{key:<11} {', '.join(value) if isinstance(value, list) else value}")


@systems.command("grant")
@config_option
@click.argument("system_id")
@grant_option
def grant(config_path, system_id, grants):
    """Set the message types SYSTEM_ID may send (replaces the current grants)."""
    system = _run(lambda: _registry(config_path).grant(system_id, grants))
    click.echo(f"{system.id} grants: {', '.join(sorted(system.grants)) or 'none'}")


def _switch(enabled: bool, doc: str):
    @systems.command("enable" if enabled else "disable", help=doc)
    @config_option
    @click.argument("system_id")
    def command(config_path, system_id):
        _run(lambda: _registry(config_path).set_enabled(system_id, enabled))
        click.echo(f"{'enabled' if enabled else 'disabled'} {system_id}")
    return command


disable = _switch(False, "Refuse SYSTEM_ID from now on (a running hub notices within soap.registry_cache_seconds).")
enable = _switch(True, "Let a disabled SYSTEM_ID connect again.")


@systems.command("rotate-secret")
@config_option
@click.argument("system_id")
@click.option("--secret", help="The new secret; without it one is generated and printed once.")
def rotate_secret(config_path, system_id, secret):
    """Replace SYSTEM_ID's secret; the old one stops working."""
    new = _run(lambda: _registry(config_path).rotate_secret(system_id, secret))
    click.echo(f"rotated the secret of {system_id}")
    if not secret:
        click.echo(f"new secret (shown once): {new}")


@systems.command("new-key")
def new_key():
    """Print a new secret_key for encrypting system secrets (for HUITONG_SECRET_KEY)."""
    from bus.secret_box import new_key as make
    click.echo(make())
