"""Broker topology as data, declared in one place; nothing else declares queues.

- `huitong.messages`: the topic exchange the relay publishes every accepted message to,
  with routing key <type>.<region>.<department>.<system>.
- `huitong.route.<id>`: one durable queue per route, bound with the keys its `from` implies;
  retries and forwards are published straight to it (default exchange).
- `huitong.route.<id>.dead`: where a route's exhausted messages wait for an operator.

Quorum queues on RabbitMQ (replicated, durable); the in-memory transport ignores that."""
from __future__ import annotations

from kombu import Exchange, Queue, binding

MESSAGES = Exchange("huitong.messages", type="topic", durable=True)
DIRECT = ""  # the default exchange: the routing key is the queue's name


def route_queue_name(route_id: str) -> str:
    return f"huitong.route.{route_id}"


def dead_queue_name(route_id: str) -> str:
    return f"huitong.route.{route_id}.dead"


def _arguments(quorum: bool) -> dict:
    return {"x-queue-type": "quorum"} if quorum else {}


def durable_queue(name: str, binding_key: str, *, quorum: bool) -> Queue:
    """A queue bound to the message exchange with one key."""
    return Queue(name, exchange=MESSAGES, routing_key=binding_key, durable=True,
                 queue_arguments=_arguments(quorum))


def route_queue(route_id: str, binding_keys: list[str], *, quorum: bool) -> Queue:
    return Queue(route_queue_name(route_id), durable=True, queue_arguments=_arguments(quorum),
                 bindings=[binding(MESSAGES, routing_key=key) for key in binding_keys])


def dead_queue(route_id: str, *, quorum: bool) -> Queue:
    return Queue(dead_queue_name(route_id), durable=True, queue_arguments=_arguments(quorum))


def route_topology(bindings: dict[str, list[str]], *, quorum: bool) -> list[Queue]:
    """Every queue the routes need: {route id: binding keys} -> queues."""
    queues = []
    for route_id, keys in bindings.items():
        queues += [route_queue(route_id, keys, quorum=quorum), dead_queue(route_id, quorum=quorum)]
    return queues


def declare(channel, queues: list[Queue] = ()) -> None:
    MESSAGES(channel).declare()
    for q in queues:
        q(channel).declare()
