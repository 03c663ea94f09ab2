"""Errors the use cases raise; the interfaces map each to an HTTP status or a CLI message."""

from __future__ import annotations


class ApplicationError(Exception):
    """Base of every error a caller of the application can act on; `detail` says what went wrong."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class MalformedWebhook(ApplicationError):
    """The body is not JSON, or not an Instagram webhook."""


class InvalidSignature(ApplicationError):
    """`X-Hub-Signature-256` is missing or does not match the account's app secret."""


class StorageUnavailable(ApplicationError):
    """The event store could not commit; nothing was stored and the caller may retry."""


class AccountAlreadyRegistered(ApplicationError):
    """An account with this Instagram id is already registered."""


class AccountNotFound(ApplicationError):
    """No account with this id is registered."""


class InvalidInput(ApplicationError):
    """A command's input is invalid; `field` names the culprit."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field


class Unauthenticated(ApplicationError):
    """No API key, or one that is unknown, malformed or revoked."""


class NotFound(ApplicationError):
    """The resource does not exist, or the caller may not know that it does."""


class Forbidden(ApplicationError):
    """The caller's key may read this resource but not change it."""


class Conflict(ApplicationError):
    """The request conflicts with one made before (an idempotency key reused otherwise)."""
