"""What a server process builds at startup is left out of the collector's full passes
(`interfaces/long_lived_objects.py`): they walked ~130,000 objects that never die, and the
requests in flight waited for them (P1's answer-time tail)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.fresh_process import migrated_sqlite_url, run_python, served_env


def _run(script: str, env: dict[str, str] | None = None) -> dict[str, int]:
    """Run `script` in a fresh interpreter (freezing is for the whole process, never this
    test run's) and read the JSON object it prints last."""
    result: dict[str, int] = json.loads(run_python(script, env).strip().splitlines()[-1])
    return result


def test_startup_garbage_is_collected_and_what_lives_is_set_aside() -> None:
    # given a process holding a live cycle and a dead one
    script = (
        "import gc, json, weakref\n"
        "from interfaces.long_lived_objects import freeze_startup_objects\n"
        "class Node: pass\n"
        "kept = Node(); kept.me = kept\n"
        "dead = Node(); dead.me = dead\n"
        "dead_ref = weakref.ref(dead); del dead\n"
        "frozen = freeze_startup_objects()\n"
        "tracked = gc.get_objects()\n"
        "print(json.dumps({'frozen': frozen, 'freeze_count': gc.get_freeze_count(),\n"
        "    'dead_kept': dead_ref() is not None,\n"
        "    'kept_in_passes': any(o is kept for o in tracked), 'tracked': len(tracked)}))\n"
    )
    # when it freezes what startup made
    result = _run(script)

    # then the dead cycle was collected first, and the live one is in no generation
    assert result["dead_kept"] is False
    assert result["frozen"] == result["freeze_count"] > 1_000
    assert result["kept_in_passes"] is False
    assert result["tracked"] < result["frozen"]


def test_a_web_worker_sets_its_services_aside_before_it_takes_load(tmp_path: Path) -> None:
    # given a migrated SQLite database
    url = migrated_sqlite_url(tmp_path)
    # when a fresh interpreter builds the app as each `serve` worker does
    script = (
        "import gc, json\n"
        "from interfaces import http_workers\n"
        "app = http_workers.app()\n"
        "print(json.dumps({'frozen': gc.get_freeze_count(), 'tracked': len(gc.get_objects())}))\n"
    )
    env = served_env(url, tmp_path)
    result = _run(script, env)

    # then the stack and the services it built are out of the collector's passes
    assert result["frozen"] > 50_000
    assert result["tracked"] < result["frozen"] / 10
