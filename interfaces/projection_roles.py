"""What `dmledger project` tells the operator: which projections this process runs, which
wait behind another process's runner (standbys, on PostgreSQL), and when one takes over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from projections.runner import ProjectionRunner

GRACE_SECONDS = 3.0
"""How long runners get to take their lock and LISTEN before one still without it is
reported as a standby (it normally takes a few milliseconds)."""


def report_roles(
    runners: Mapping[str, ProjectionRunner],
    stop: threading.Event,
    say: Callable[[str], None],
    *,
    grace: float = GRACE_SECONDS,
) -> None:
    """Say which runners are active and which wait, then each takeover, until `stop`."""
    deadline = time.monotonic() + grace
    while not stop.is_set() and time.monotonic() < deadline:
        if all(runner.following.is_set() for runner in runners.values()):
            break
        stop.wait(0.05)
    active = [name for name, runner in runners.items() if runner.following.is_set()]
    waiting = [name for name in runners if name not in active]
    if active:
        say(f"running projections: {', '.join(active)}")
    if waiting:
        say(
            f"waiting behind another process's runner (standby) for: {', '.join(waiting)}; "
            "each is taken over when that runner stops"
        )
    while waiting and not stop.wait(0.5):
        for name in [n for n in waiting if runners[n].following.is_set()]:
            say(f"took over {name}: the runner it waited behind stopped")
            waiting.remove(name)
