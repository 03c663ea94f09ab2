"""What a log line is about: the request, the account and the conversation being handled.

The HTTP layer sets the request id and the account of the path; code that learns the
account (the webhook ingest) sets it too. Each is a context variable, so it follows the
request into its tasks and worker threads, and the log's formatter reads it.
"""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
account_id: ContextVar[str | None] = ContextVar("account_id", default=None)
conversation_id: ContextVar[str | None] = ContextVar("conversation_id", default=None)


def current() -> dict[str, str]:
    """The ids known here, by name (those unknown left out)."""
    known = {
        "request_id": request_id.get(),
        "account_id": account_id.get(),
        "conversation_id": conversation_id.get(),
    }
    return {name: value for name, value in known.items() if value is not None}
