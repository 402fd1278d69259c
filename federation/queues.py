"""The queues federation adds to the topology: one out-queue per upstream on the sending hub's
broker, one in-queue per sending hub on the receiving hub's broker, both on the default
exchange; the shovel between them acknowledges a message at its source only when the
destination broker confirmed it.

Classic durable queues, not quorum ones like the routes': a dynamic shovel declares its source
and destination queues with default arguments (before RabbitMQ 3.12 it cannot be told
otherwise), and a quorum queue refuses such a declaration. Messages are persistent and every
hop is confirmed, so a single node loses nothing; a cluster may add a policy to mirror them."""
from __future__ import annotations

from kombu import Queue

OUT_PREFIX = "huitong.federation.out."
IN_PREFIX = "huitong.federation.in."


def out_queue_name(upstream: str) -> str:
    return OUT_PREFIX + upstream


def in_queue_name(hub_system_id: str) -> str:
    return IN_PREFIX + hub_system_id


def federation_queue(name: str) -> Queue:
    return Queue(name, durable=True)
