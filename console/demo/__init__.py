"""`huitong serve --demo`: the embedded hub with simulated department systems pushing cases
(some invalid) and a flaky provincial platform, so a newcomer opening the console sees live
traffic, rejections and dead letters to retry."""
from __future__ import annotations

import os
import secrets
from importlib.resources import files
from pathlib import Path

from bus.config import Settings, load_settings

HERE = Path(__file__).parent
DEMO_USERS = {"demo-operator": "operator", "demo-auditor": "auditor", "demo-admin": "admin"}


def demo_settings(config_path: str | None = None) -> Settings:
    """The demo's configuration (or the given one, for a demo of one's own); the systems'
    secret is made up now."""
    os.environ.setdefault("DEMO_SYSTEMS_SECRET", "demo-" + secrets.token_urlsafe(18))
    if config_path:
        return load_settings(config_path)
    calendar = files("supervision").joinpath("calendars", "cn-2026.yaml")
    text = ((HERE / "huitong-demo.yaml").read_text(encoding="utf-8").replace("ROUTES_DIR", str(HERE / "routes"))
            .replace("CALENDAR", str(calendar)))
    target = Path("var/demo")
    target.mkdir(parents=True, exist_ok=True)
    (target / "huitong-demo.yaml").write_text(text, encoding="utf-8")
    return load_settings(target / "huitong-demo.yaml")


def demo_users(engine) -> dict[str, str]:
    """The demo's users with passwords made up at this start (printed once, for the newcomer)."""
    from console.users import UserStore
    store = UserStore(engine)
    passwords = {}
    for username, role in DEMO_USERS.items():
        password = "demo-" + secrets.token_urlsafe(9)
        if store.get(username) is None:
            store.add(username, role, password, by="demo")
        else:
            store.set_password(username, password, by="demo")
        passwords[username] = password
    return passwords


def start_demo(hub, *, per_second: float = 2.0):
    """Start the simulated departments; returns (stop, lines to show the newcomer)."""
    from console.demo.traffic import DemoTraffic
    passwords = demo_users(hub.engine)
    traffic = DemoTraffic(hub, per_second=per_second).start()
    lines = ["Demo: simulated department systems push cases (one in ten wrong); the provincial platform "
             "is flaky, so some messages become dead letters to retry.",
             "Sign in to the console with (passwords made up at this start):"]
    lines += [f"  {user:<14} {password}   ({DEMO_USERS[user]})" for user, password in passwords.items()]
    return traffic.stop, lines
