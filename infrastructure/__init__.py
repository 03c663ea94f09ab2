"""Adapters: settings, persistence, encryption; they implement the application's ports."""

import sys

# httpx imports its own command line (`httpx.main`: rich, pygments, click) whenever those
# are installed, and they always are, as Litestar's command line needs them: ~4 MiB of
# every dmledger process (P6: at most 100 MiB a web worker), for a command dmledger never
# runs. Every module that imports httpx is in this package, so this runs first: a None in
# `sys.modules` makes httpx's `from ._main import main` raise ImportError at once, and
# httpx defines its stub `main` instead (the one it has for an install without them).
# tests/unit/test_web_worker_imports.py fails if they come back.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: not importable
