"""`huitong federation plan`: the RabbitMQ shovels that carry this hub's `federation`
destinations to the other hubs, and what those hubs need in turn. The other hub's AMQP URL (a
credential) stays in the environment variable the destination names: the printed commands
let the shell put it in; only --json, meant for a definitions import, writes it out."""
from __future__ import annotations

import json
import os
import shlex
import sys
from urllib.parse import quote, unquote, urlsplit

import click

from bus.cli_common import _settings, config_option
from bus.systems import FORWARD
from federation.queues import in_queue_name, out_queue_name


def shovel_plan(settings, routes) -> list[dict]:
    """One entry per federation destination: the shovel (vhost, name, value) and what the
    upstream hub must have (its inbound setting, this hub's registration and grants)."""
    vhost = unquote(urlsplit(settings.broker_url).path[1:]) or "/"
    local_uri = "amqp://" if vhost == "/" else "amqp:///" + quote(vhost, safe="")
    plans = []
    for name, options in sorted(settings.destinations.items()):
        if options.get("type") != "federation":
            continue
        types = sorted({t for r in routes.routes.values() if any(x.name == name for x in r.targets)
                        for t in (r.from_.types or ("*",))})
        env = options["upstream_url_env"]
        plans.append({
            "destination": name, "upstream": options["upstream"], "url_env": env,
            "shovel": {"vhost": vhost, "component": "shovel", "name": f"huitong-{options['hub_id']}-to-{options['upstream']}",
                       "value": {"src-protocol": "amqp091", "src-uri": local_uri,
                                 "src-queue": out_queue_name(options["upstream"]),
                                 "dest-protocol": "amqp091", "dest-uri": os.environ.get(env) or f"${{{env}}}",
                                 "dest-queue": in_queue_name(options["hub_id"]),
                                 "ack-mode": "on-confirm", "src-delete-after": "never", "reconnect-delay": 5}},
            "upstream_needs": {"federation.inbound": options["hub_id"], "system": options["hub_id"],
                               "grants": [FORWARD, *[t for t in types if t != "*"]]}})
    return plans


@click.group()
def federation():
    """Federation between hubs over RabbitMQ (shovels); the SOAP way is the hub destination."""


@federation.command()
@config_option
@click.option("--json", "as_json", is_flag=True,
              help="RabbitMQ definitions (parameters) to import; the URL is read from its environment variable.")
def plan(config_path, as_json):
    """The shovels for this hub's federation destinations, and what each upstream hub needs."""
    from routes.cli import _checked_routes
    settings = _settings(config_path)
    plans = shovel_plan(settings, _checked_routes(settings))
    if not plans:
        raise click.ClickException("no federation destination in the configuration: nothing to plan "
                                   "(a destination of type federation, routed to by a route)")
    if as_json:
        for p in plans:
            if p["shovel"]["value"]["dest-uri"].startswith("${"):
                click.echo(f"warning: {p['url_env']} is not set; dest-uri is left as {p['shovel']['value']['dest-uri']}",
                           err=True)
        click.echo(json.dumps({"parameters": [p["shovel"] for p in plans],
                               "upstream_needs": [{"upstream": p["upstream"], **p["upstream_needs"]} for p in plans]},
                              indent=2, ensure_ascii=False))
        return
    for p in plans:
        shovel = p["shovel"]
        value = dict(shovel["value"], **{"dest-uri": f"${p['url_env']}"})
        # Double quotes so the shell puts the URL in from the environment when the command runs.
        body = json.dumps(value).replace('"', '\\"')
        click.echo(f"# {p['destination']}: this hub -> {p['upstream']} (run on this hub's RabbitMQ, "
                   f"with {p['url_env']} set to {p['upstream']}'s AMQP URL)")
        click.echo("rabbitmq-plugins enable rabbitmq_shovel")
        click.echo(f"rabbitmqctl set_parameter -p {shlex.quote(shovel['vhost'])} shovel {shlex.quote(shovel['name'])} "
                   f"\"{body}\"")
        needs = p["upstream_needs"]
        click.echo(f"# on the {p['upstream']} hub: huitong.yaml  federation: {{inbound: [{needs['system']}]}}")
        grants = " ".join(f"--grant {g}" for g in needs["grants"])
        click.echo(f"#   huitong systems add {needs['system']} --name NAME --secret SECRET {grants}")
        click.echo("")
    sys.stdout.flush()
