"""Destinations: where a route delivers. Each type is a small plug-in class found through the
`huitong.destinations` entry-point group, so a new type is a new module and an entry point,
never an edit of the router.

Destinations are declared by name in the configuration (`destinations:`), with `type:` and
the type's options, which the plug-in's `options_schema` (JSON Schema) checks at start. Route
files name them; credentials and addresses stay in the configuration."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for one destination of one route."""

    message_seq: int
    message_id: str
    source: str
    type: str
    correlation_id: str | None
    route: str
    payload: bytes  # what the destination sends: the transformed message, or the canonical one
    envelope: bytes = field(repr=False)  # the canonical message as accepted


@dataclass
class DestinationContext:
    """What a plug-in may need from the running hub."""

    settings: Any
    # () -> bus.broker.Publisher, for destinations that publish (route forwards); one per thread
    publisher_factory: Any = None
    state_dir: str = "var"
    # (list[bytes], system=...) -> receipts: the hub's acceptance, for destinations that
    # produce messages of their own (supervision alerts); None outside a hub
    submit: Any = None


class Destination(ABC):
    type: ClassVar[str]
    options_schema: ClassVar[dict] = {"type": "object", "additionalProperties": False}
    # Secrets and addresses a route check must not print.
    secret_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, options: dict, context: DestinationContext):
        self.name = name
        self.options = options
        self.context = context

    @abstractmethod
    def deliver(self, items: list[Outgoing]) -> list[dict | Exception]:
        """Deliver each item; return per item a JSON-able reply (recorded with DELIVERED) or
        the exception (a DeliveryError) that says why not. Items of one call may be delivered
        together (one fsync, one round trip), but each outcome stands alone."""

    def describe(self) -> str:
        shown = {k: v for k, v in self.options.items() if k not in self.secret_options}
        return f"{self.type} {shown}"

    def close(self) -> None:
        pass


class DatabaseDestination(Destination):
    """A destination that keeps what it is given in a database: its own (option `url`), else
    the hub's. Subclasses say what the database holds (`holds`, for the option's help)."""

    holds: ClassVar[str] = "the destination"
    secret_options = ("url",)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.options_schema = {
            "type": "object", "additionalProperties": False,
            "properties": {"url": {"type": "string", "minLength": 1,
                                   "description": f"Database of {cls.holds}; default: the hub's own database."}},
        }

    def __init__(self, name: str, options: dict, context: DestinationContext):
        from bus.database import make_engine

        super().__init__(name, options, context)
        self.engine = make_engine(options.get("url") or context.settings.effective_database_url)

    def close(self) -> None:
        self.engine.dispose()


def destination_types() -> dict[str, type[Destination]]:
    return {ep.name: ep.load() for ep in entry_points(group="huitong.destinations")}
