"""Where a web worker's memory goes (`./benchmarks/run ... --soak M --probe`; not in CI).

In the worker (`BENCH_PROBE_DIR` set, `benchmarks/apps.py`): tracemalloc is started after
start-up (one frame a block) and SIGUSR2 writes `probe-N.json` (the resident set, the
traced memory, and each in-process cache: its owner, entries, bound and approximate bytes,
deep-sized from a sample of its entries) and `probe-N.tracemalloc` (a snapshot) into that
directory. The harness (`benchmarks/soak.py`) asks for one after the first sample, one
at the end of each quarter, and `report()` puts the caches side by side and the top
lines of tracemalloc's difference from the end of the first quarter to the end.

tracemalloc costs CPU and memory of its own (its tables are in the resident set but not in
the traced figure), and each dump's snapshot is ~25 MiB of Python objects that the
allocators keep once freed (a 12-minute soak at 150/s: 117 -> 219 MiB in steps at the
dumps, the traced objects 7.7 -> 29.6 MiB): a probed soak's RSS is not P6's figure; read
the caches and tracemalloc's lines, and the RSS of a soak without `--probe`. The caches
are found by walking what the services hold (`gc.freeze()` at start-up hides them from
`gc.get_objects()`): a dump takes ~5 s of a core.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Any

DIRECTORY_VARIABLE = "BENCH_PROBE_DIR"
SAMPLE = 300
"""Entries deep-sized a cache; the cache's bytes are extrapolated from them."""
TOP = 25


def install(directory: Path, root: object) -> None:
    """In the worker: start tracing and dump on SIGUSR2; the caches are looked for among
    what `root` (the services) holds."""
    directory.mkdir(parents=True, exist_ok=True)
    _roots.append(root)
    tracemalloc.start(1)
    count = [0]

    def dump(_signal: int, _frame: object) -> None:
        count[0] += 1
        # Not in the signal handler's frame: one thread, so the dump does not interleave.
        threading.Thread(target=_dump, args=(directory, count[0]), daemon=True).start()

    signal.signal(signal.SIGUSR2, dump)


def _dump(directory: Path, n: int) -> None:
    started = time.monotonic()
    snapshot = tracemalloc.take_snapshot()
    snapshot.dump(str(directory / f"probe-{n}.tracemalloc"))
    traced, _ = tracemalloc.get_traced_memory()
    report = {
        "rss_mb": _status_kb("VmRSS") / 1024,
        "hwm_mb": _status_kb("VmHWM") / 1024,
        "traced_mb": traced / 2**20,
        "tracemalloc_own_mb": tracemalloc.get_tracemalloc_memory() / 2**20,
        "anonymous_mb": _rollup_kb("Anonymous") / 1024,
        "threads": threading.active_count(),
        "malloc": _mallinfo(),
        "caches": caches(),
    }
    report["seconds"] = round(time.monotonic() - started, 2)
    part = directory / f"probe-{n}.part"
    part.write_text(json.dumps(report, indent=1))
    part.rename(directory / f"probe-{n}.json")


_roots: list[object] = []


def _reachable(roots: list[object]) -> Iterable[object]:
    """What `roots` hold, directly or not (not through modules, types or functions).
    Not `gc.get_objects()`: it leaves out what `gc.freeze()` set aside at start-up,
    which is where the caches are."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | ModuleType | FunctionType):
            continue
        seen.add(id(obj))
        yield obj
        stack.extend(gc.get_referents(obj))


def caches() -> list[dict[str, Any]]:
    """Every cachetools cache and shared reading's window the services hold, and the
    functools.lru_cache functions of dmledger's modules."""
    from cachetools import Cache

    found: list[dict[str, Any]] = []
    for obj in _reachable(_roots):
        # Not isinstance: an ABC's check would remember every type it is asked about.
        if Cache in type(obj).__mro__:
            cache: Any = obj
            items = list(cache.items())
            found.append(
                {
                    "owner": _owner(cache),
                    "entries": len(items),
                    "maxsize": cache.maxsize,
                    "currsize": cache.currsize,
                    "bytes": _extrapolated(items),
                }
            )
        elif type(obj).__name__ == "SharedReading":
            events = list(getattr(obj, "_events", {}).items())
            found.append(
                {
                    "owner": "SharedReading._events",
                    "entries": len(events),
                    "maxsize": getattr(obj, "_keep", None),
                    "bytes": _extrapolated(events),
                }
            )
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith(
            ("application", "domain", "infrastructure", "interfaces", "projections")
        ):
            continue
        for name, value in list(vars(module).items()):
            info = getattr(value, "cache_info", None)
            if callable(info) and getattr(value, "__module__", None) == module.__name__:
                stats = info()
                found.append(
                    {
                        "owner": f"{module.__name__}.{name} (lru_cache)",
                        "entries": stats.currsize,
                        "maxsize": stats.maxsize,
                        "hits": stats.hits,
                        "misses": stats.misses,
                    }
                )
    return found


def _owner(cache: object) -> str:
    """`Class.attribute` of the object whose attribute the cache is, if one is found."""
    for referrer in _referrers(cache):
        # Python 3.11 keeps an instance's attributes without a dict until one is asked for.
        held = referrer if type(referrer) is dict else getattr(referrer, "__dict__", None)
        if type(held) is not dict:
            continue
        names = [k for k, v in held.items() if v is cache]
        if not names:
            continue
        if held is not referrer:
            return f"{type(referrer).__module__}.{type(referrer).__qualname__}.{names[0]}"
        for holder in _referrers(referrer):
            if getattr(holder, "__dict__", None) is referrer:
                return f"{type(holder).__module__}.{type(holder).__qualname__}.{names[0]}"
    return type(cache).__name__


def _referrers(obj: object) -> list[object]:
    """`gc.get_referrers`, frozen objects included (it sees only the collected ones)."""
    if not gc.get_freeze_count():
        return list(gc.get_referrers(obj))
    return [r for r in _reachable(_roots) if any(x is obj for x in gc.get_referents(r))]


def _extrapolated(items: list[Any]) -> int:
    if not items:
        return 0
    step = max(1, len(items) // SAMPLE)
    sample = items[::step]
    seen: set[int] = set()
    size = sum(deep_size(item, seen) for item in sample)
    # Each entry's slot in the mapping, besides what it holds (a dict's ~100 bytes).
    return int(size * len(items) / len(sample)) + 100 * len(items)


def deep_size(obj: object, seen: set[int]) -> int:
    """The bytes of `obj` and of what it holds, each object counted once in `seen`."""
    if id(obj) in seen or isinstance(obj, type | ModuleType | FunctionType):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    children: Iterable[object] = ()
    if isinstance(obj, dict):
        children = [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple | set | frozenset):
        children = obj
    else:
        held = getattr(obj, "__dict__", None)
        if held is not None:
            size += deep_size(held, seen)
        slots = [s for k in type(obj).__mro__ for s in getattr(k, "__slots__", ())]
        children = [getattr(obj, s) for s in slots if hasattr(obj, s)]
    return size + sum(deep_size(child, seen) for child in children)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo() -> dict[str, float]:
    """glibc's heaps, in MiB: `heap` obtained by brk/arenas, `mmapped` chunks, `in_use`
    and `free` of the heap (what is free but kept is the allocator's growth)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {
        "heap": info.arena / 2**20,
        "mmapped": info.hblkhd / 2**20,
        "in_use": info.uordblks / 2**20,
        "free": info.fordblks / 2**20,
    }


def _rollup_kb(field: str) -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# -- in the harness ------------------------------------------------------------------------


def ask(pid: int, directory: Path, n: int, timeout: float = 120.0) -> dict[str, Any]:
    """Signal the worker for its `n`th dump and wait for it."""
    os.kill(pid, signal.SIGUSR2)
    path = directory / f"probe-{n}.json"
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no probe dump {path} within {timeout} s")
        time.sleep(0.5)
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def report(directory: Path, dumps: list[tuple[str, int]]) -> str:
    """The caches at each dump, and tracemalloc's top lines from the second (the end of
    the first quarter) to the last."""
    loaded = [
        (label, json.loads((directory / f"probe-{n}.json").read_text())) for label, n in dumps
    ]
    lines = ["dumps: " + ", ".join(label for label, _ in loaded)]
    lines.append(
        "anonymous MiB: "
        + ", ".join(f"{d.get('anonymous_mb', 0):.1f}" for _, d in loaded)
        + "; glibc heap (in use / free) MiB: "
        + ", ".join(
            f"{m.get('heap', 0):.1f} ({m.get('in_use', 0):.1f} / {m.get('free', 0):.1f})"
            + f" + mmapped {m.get('mmapped', 0):.1f}"
            for m in (d.get("malloc", {}) for _, d in loaded)
        )
    )
    lines.append(
        "rss MiB: "
        + ", ".join(f"{d['rss_mb']:.1f}" for _, d in loaded)
        + "; traced MiB: "
        + ", ".join(f"{d['traced_mb']:.1f}" for _, d in loaded)
        + "; tracemalloc's own MiB: "
        + ", ".join(f"{d['tracemalloc_own_mb']:.1f}" for _, d in loaded)
    )
    owners = sorted({c["owner"] for _, d in loaded for c in d["caches"]})
    for owner in owners:
        cells = []
        for _, d in loaded:
            cache = next((c for c in d["caches"] if c["owner"] == owner), None)
            if cache is None:
                cells.append("-")
                continue
            size = f" {cache['bytes'] / 2**20:.2f} MiB" if "bytes" in cache else ""
            cells.append(f"{cache['entries']}{size}")
        bound = next(
            c.get("maxsize") for _, d in loaded for c in d["caches"] if c["owner"] == owner
        )
        lines.append(f"  {owner} (max {bound}): " + " | ".join(cells))
    if len(dumps) >= 2:
        first = dumps[1] if len(dumps) > 2 else dumps[0]
        before = tracemalloc.Snapshot.load(str(directory / f"probe-{first[1]}.tracemalloc"))
        after = tracemalloc.Snapshot.load(str(directory / f"probe-{dumps[-1][1]}.tracemalloc"))
        lines.append(f"tracemalloc, {first[0]} -> {dumps[-1][0]}, top {TOP} lines:")
        for stat in after.compare_to(before, "lineno")[:TOP]:
            lines.append(f"  {stat}")
    return "\n".join(lines)
