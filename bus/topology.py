"""Broker topology as data, declared in one place. The routes issue adds one durable queue
per route (huitong.route.<id>, .retry, .dead) here; nothing else declares queues."""
from __future__ import annotations

from kombu import Exchange, Queue

MESSAGES = Exchange("huitong.messages", type="topic", durable=True)


def route_queue_name(route_id: str) -> str:
    return f"huitong.route.{route_id}"


def durable_queue(name: str, binding_key: str, *, quorum: bool) -> Queue:
    """A queue bound to the message exchange. Quorum queues on RabbitMQ: replicated and
    durable; the in-memory transport ignores the argument."""
    arguments = {"x-queue-type": "quorum"} if quorum else {}
    return Queue(name, exchange=MESSAGES, routing_key=binding_key, durable=True,
                 queue_arguments=arguments)


def declare(channel, queues: list[Queue] = ()) -> None:
    MESSAGES(channel).declare()
    for q in queues:
        q(channel).declare()
