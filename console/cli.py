"""`huitong users …`: the console's users. Passwords are read from a prompt (or stdin with
--password-stdin), never from the command line, and never printed."""
from __future__ import annotations

import getpass
import json
import sys

import click

from bus.cli_common import _settings, config_option, engine_for
from bus.errors import HuitongError
from console.users import ROLES, UserStore

role_option = click.option("--role", type=click.Choice(list(ROLES)), required=True,
                           help="operator: view, retry, discard, pause; auditor: read-only, log search, export, "
                                "replay; admin: all that, and systems and users.")
stdin_option = click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")


def _store(config_path) -> UserStore:
    return UserStore(engine_for(_settings(config_path)))


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _run(action):
    try:
        return action()
    except HuitongError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def users():
    """Console users: who may sign in at / and with which role."""


@users.command("add")
@config_option
@click.argument("username")
@role_option
@stdin_option
def users_add(config_path, username, role, password_stdin):
    """Add USERNAME with a role; asks for the password (10 characters or more)."""
    store = _store(config_path)
    password = _password(password_stdin)
    _run(lambda: store.add(username, role, password, by=f"cli:{getpass.getuser()}"))
    click.echo(f"user {username} added ({role})")


@users.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per user.")
def users_list(config_path, as_json):
    """The console's users, their roles, and whether they may sign in."""
    for user in _store(config_path).list():
        if as_json:
            click.echo(json.dumps(vars(user)))
        else:
            click.echo(f"{user.username:<24} {user.role:<9} {'enabled' if user.enabled else 'DISABLED'}")


@users.command("passwd")
@config_option
@click.argument("username")
@stdin_option
def users_passwd(config_path, username, password_stdin):
    """Set USERNAME's password."""
    store = _store(config_path)
    password = _password(password_stdin)
    _run(lambda: store.set_password(username, password, by=f"cli:{getpass.getuser()}"))
    click.echo(f"password of {username} changed")


@users.command("role")
@config_option
@click.argument("username")
@role_option
def users_role(config_path, username, role):
    """Give USERNAME another role (takes effect on its next page)."""
    _run(lambda: _store(config_path).set_role(username, role, by=f"cli:{getpass.getuser()}"))
    click.echo(f"{username} is now {role}")


@users.command("disable")
@config_option
@click.argument("username")
def users_disable(config_path, username):
    """Stop USERNAME signing in; its open sessions end at once."""
    _run(lambda: _store(config_path).set_enabled(username, False, by=f"cli:{getpass.getuser()}"))
    click.echo(f"{username} disabled")


@users.command("enable")
@config_option
@click.argument("username")
def users_enable(config_path, username):
    """Let a disabled USERNAME sign in again."""
    _run(lambda: _store(config_path).set_enabled(username, True, by=f"cli:{getpass.getuser()}"))
    click.echo(f"{username} enabled")
