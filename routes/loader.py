"""Reads route files and the configured destinations, checks everything that can be checked
before a message flows, and compiles the routes. Every problem is reported at once, each
with its file and line: an unknown key, a destination or route that does not exist, an
XPath or XSLT that does not compile, a forward loop. `huitong routes check` prints them;
`huitong serve` refuses to start on them."""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml
from lxml import etree

from bus.errors import RoutesInvalid
from routes.definition import From, RetryPolicy, Route, Target, xpath_truth
from routes.destinations import Destination, DestinationContext, destination_types
from routes.transforms import MapperTransform, Transform, XsltTransform
from schemas.hardened import HardenedParser

SCHEMA_FILE = Path(__file__).with_name("route-1.schema.json")
ROUTE_SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
_PROBE = etree.Element("probe")  # evaluating once finds undeclared prefixes and functions


@dataclass(frozen=True, slots=True)
class RouteProblem:
    file: str
    line: int | None
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}" if self.line else f"{self.file}: {self.text}"


@dataclass
class RouteSet:
    routes: dict[str, Route]
    destinations: dict[str, Destination]

    def enabled(self) -> list[Route]:
        return [r for r in self.routes.values() if r.enabled]

    def bindings(self) -> dict[str, list[str]]:
        return {r.id: r.from_.binding_keys() for r in self.enabled()}

    def close(self) -> None:
        for destination in self.destinations.values():
            destination.close()


def load_routes(route_dir: str | Path | None, destinations: dict[str, dict],
                context: DestinationContext, *, parser: HardenedParser | None = None) -> RouteSet:
    """Load and check; raises RoutesInvalid listing every problem."""
    problems: list[RouteProblem] = []
    built = _build_destinations(destinations, context, problems)
    routes: dict[str, Route] = {}
    files: list[Path] = []
    if route_dir:
        directory = Path(route_dir)
        if not directory.is_dir():
            problems.append(RouteProblem(str(directory), None, "route directory does not exist"))
        else:
            files = sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    parser = parser or HardenedParser()
    raw: list[tuple[Path, dict, yaml.Node]] = []
    for path in files:
        document = _read(path, problems)
        if document is not None:
            raw.append((path, *document))
    ids = {data.get("id") for _, data, _ in raw if isinstance(data, dict)}
    for path, data, node in raw:
        route = _compile(path, data, node, built, ids, parser, problems)
        if route is None:
            continue
        if route.id in routes:
            problems.append(RouteProblem(str(path), _line(node, ["id"]),
                                         f"route id {route.id!r} is also used by {routes[route.id].source_file}"))
            continue
        routes[route.id] = route
    _check_forward_loops(routes, problems)
    forward = destination_types()["route"]
    for target in (t for r in routes.values() for t in r.targets if t.forward_to):
        built.setdefault(target.name, forward(target.name, {"route": target.forward_to}, context))
    if problems:
        raise RoutesInvalid(problems)
    return RouteSet(routes, built)


# -- destinations ----------------------------------------------------------------------------
def _build_destinations(config: dict[str, dict], context: DestinationContext,
                        problems: list[RouteProblem]) -> dict[str, Destination]:
    types = destination_types()
    built: dict[str, Destination] = {}
    for name, options in config.items():
        where = f"configuration destinations.{name}"
        if not isinstance(options, dict) or "type" not in options:
            problems.append(RouteProblem(where, None, "needs a type: " + ", ".join(sorted(types))))
            continue
        options = dict(options)
        kind = options.pop("type")
        plugin = types.get(kind)
        if plugin is None:
            guess = difflib.get_close_matches(str(kind), types, n=1)
            problems.append(RouteProblem(where, None, f"unknown destination type {kind!r}" +
                                         (f"; did you mean {guess[0]}?" if guess else
                                          f"; known: {', '.join(sorted(types))}")))
            continue
        errors = sorted(jsonschema.Draft202012Validator(plugin.options_schema).iter_errors(options),
                        key=lambda e: list(e.absolute_path))
        for error in errors:
            problems.append(RouteProblem(where, None, _schema_text(error)))
        if not errors:
            try:
                built[name] = plugin(name, options, context)
            except (ValueError, LookupError) as exc:  # a mapping that is missing, an unknown encoding
                problems.append(RouteProblem(where, None, str(exc)))
    return built


# -- one route file ---------------------------------------------------------------------------
def _read(path: Path, problems: list[RouteProblem]):
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        problems.append(RouteProblem(str(path), None, "not UTF-8"))
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(RouteProblem(str(path), mark.line + 1 if mark else None,
                                     f"not valid YAML: {getattr(exc, 'problem', exc)}"))
        return None
    if not isinstance(data, dict):
        problems.append(RouteProblem(str(path), 1, "a route file is a mapping (id, from, to, ...)"))
        return None
    return data, node


def _compile(path: Path, data: dict, node, destinations: dict, route_ids: set, parser: HardenedParser,
             problems: list[RouteProblem]) -> Route | None:
    file = str(path)
    errors = list(jsonschema.Draft202012Validator(ROUTE_SCHEMA).iter_errors(data))
    for error in errors:
        where = list(error.absolute_path)
        if error.validator == "additionalProperties":
            extra = _extra_keys(error)
            known = list(error.schema.get("properties", {}))
            for key in extra:
                guess = difflib.get_close_matches(key, known, n=1)
                problems.append(RouteProblem(file, _line(node, where + [key], key_line=True),
                                             f"unknown key {key!r}" + _at(where) +
                                             (f"; did you mean {guess[0]}?" if guess else f"; known: {', '.join(known)}")))
            continue
        problems.append(RouteProblem(file, _line(node, where), _schema_text(error)))
    if errors:
        try:  # report what else is wrong where the shape allows, so one round of fixes is enough
            _compile_checked(path, data, node, destinations, route_ids, parser, problems)
        except (TypeError, KeyError, AttributeError, ValueError):
            pass
        return None
    return _compile_checked(path, data, node, destinations, route_ids, parser, problems)


def _compile_checked(path: Path, data: dict, node, destinations: dict, route_ids: set, parser: HardenedParser,
                     problems: list[RouteProblem]) -> Route | None:
    file = str(path)
    before = len(problems)
    namespaces = data.get("namespaces", {})
    when = _condition(data.get("when"), namespaces, file, node, ["when"], problems) if "when" in data else None
    transform = _transform(data.get("transform"), path, parser, file, node, ["transform"], problems)
    targets = []
    for index, entry in enumerate(data["to"]):
        at = ["to", index]
        if isinstance(entry, str):
            entry = {"destination": entry}
        target_transform = _transform(entry.get("transform"), path, parser, file, node, at + ["transform"], problems)
        if "route" in entry:
            if entry["route"] not in route_ids:
                problems.append(RouteProblem(file, _line(node, at), f"forward to route {entry['route']!r}, "
                                             "which no route file defines" + _guess(entry["route"], route_ids)))
            elif entry["route"] == data["id"]:
                problems.append(RouteProblem(file, _line(node, at), "a route cannot forward to itself"))
            targets.append(Target(f"route:{entry['route']}", target_transform, forward_to=entry["route"]))
        else:
            name = entry["destination"]
            if name not in destinations:
                problems.append(RouteProblem(file, _line(node, at), f"destination {name!r} is not declared "
                                             "under destinations: in the configuration" + _guess(name, destinations)))
            targets.append(Target(name, target_transform))
    if len(problems) > before:
        return None
    retry = data.get("retry", {})
    return Route(id=data["id"], description=data.get("description", "").strip(), source_file=file,
                 from_=From(**{k: tuple(v) for k, v in data["from"].items()}), when=when, transform=transform,
                 targets=tuple(targets), enabled=data.get("enabled", True), when_text=data.get("when"),
                 retry=RetryPolicy(retry.get("attempts", 5), float(retry.get("first_delay", 2)),
                                   float(retry.get("max_delay", 300))))


def _condition(spec, namespaces: dict, file: str, node, where: list, problems: list):
    """A predicate over the envelope root: a string is one XPath, a list means all."""
    if isinstance(spec, str):
        try:
            xpath = etree.XPath(spec, namespaces=namespaces, smart_strings=False)
            xpath(_PROBE)
        except etree.XPathError as exc:
            problems.append(RouteProblem(file, _line(node, where), f"XPath {spec!r} does not compile: {exc}"))
            return None
        return lambda root: xpath_truth(xpath(root))
    if isinstance(spec, list):
        parts = [_condition(s, namespaces, file, node, where + [i], problems) for i, s in enumerate(spec)]
        return lambda root: all(p(root) for p in parts)
    (kind, inner), = spec.items()
    if kind == "not":
        part = _condition(inner, namespaces, file, node, where + ["not"], problems)
        return lambda root: not part(root)
    parts = [_condition(s, namespaces, file, node, where + [kind, i], problems) for i, s in enumerate(inner)]
    combine = all if kind == "all" else any
    return lambda root: combine(p(root) for p in parts)


def _transform(spec, route_path: Path, parser, file, node, where, problems) -> Transform | None:
    if not spec:
        return None
    try:
        if "xslt" in spec:
            return XsltTransform((route_path.parent / spec["xslt"]).resolve(), parser)
        return MapperTransform(spec["mapper"])
    except ValueError as exc:
        problems.append(RouteProblem(file, _line(node, where), str(exc)))
        return None


def _check_forward_loops(routes: dict[str, Route], problems: list[RouteProblem]) -> None:
    edges = {r.id: [t.forward_to for t in r.targets if t.forward_to] for r in routes.values()}
    reported: set[frozenset] = set()

    def visit(route_id: str, trail: list[str]) -> None:
        for nxt in edges.get(route_id, []):
            if nxt not in trail:
                visit(nxt, trail + [nxt])
                continue
            cycle = trail[trail.index(nxt):]
            if frozenset(cycle) not in reported:
                reported.add(frozenset(cycle))
                problems.append(RouteProblem(routes[cycle[0]].source_file, None,
                                             "forwards loop: " + " -> ".join(cycle + [nxt])))

    for route_id in edges:
        visit(route_id, [route_id])


# -- reporting helpers -----------------------------------------------------------------------
def _line(node, path: list, *, key_line: bool = False) -> int | None:
    """1-based line of the YAML node at path (of the key itself with key_line)."""
    line = node.start_mark.line + 1 if node is not None else None
    for step in path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == step:
                    line = (key if key_line and step == path[-1] else value).start_mark.line + 1
                    node = value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _extra_keys(error) -> list[str]:
    allowed = set(error.schema.get("properties", {}))
    return [k for k in error.instance if k not in allowed] if isinstance(error.instance, dict) else []


def _schema_text(error) -> str:
    where = "/".join(map(str, error.absolute_path)) or "(top)"
    if error.validator in ("oneOf", "anyOf") and error.context:
        best = jsonschema.exceptions.best_match(error.context)
        return f"{where}: {best.message}"
    if error.validator == "additionalProperties":
        return f"{where}: unknown key(s) {', '.join(map(repr, _extra_keys(error)))}"
    return f"{where}: {error.message}"


def _at(where: list) -> str:
    return f" in {'/'.join(map(str, where))}" if where else ""


def _guess(name: str, known) -> str:
    guess = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {guess[0]}?" if guess else ""
