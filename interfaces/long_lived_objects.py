"""Keep what a server process builds at startup out of the garbage collector's full passes.

A full collection (CPython's generation 2) walks every container object the process
holds. Most of them are made once, at startup, and live until the process stops: the
modules of the stack, dmledger's services, its compiled statements (~130,000 objects in a
web worker). Under load a full collection ran every few seconds and took 50-80 ms (P1 at
300 webhooks/s on a loaded 2-core machine), and every request in flight waited for it:
it was the tail of the webhook's answer time. Frozen after startup (`gc.freeze`), they
are left out of every pass, and a full collection walks only what came after (the caches,
the batches in flight): 8-28 ms in the same run.

Garbage made during startup is collected first, so nothing dead is kept for good. An
object frozen here is still freed by its reference count when the last reference goes;
only a cycle of frozen objects would stay, and startup makes its cycles once.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect what startup left behind, then set every live object aside from the
    collector's passes; how many objects are now set aside.

    Call it once a server process has built its services, before it takes load: `serve`
    (each worker), `project` and `dispatch`. Not for tests that build many apps in one
    process: what an app holds would then never be collected."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
