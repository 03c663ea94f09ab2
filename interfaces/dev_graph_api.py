"""A fake Instagram Graph API on loopback: a real HTTP server with Meta's answers.

For trying dmledger without Meta (`dmledger dev fake-graph`, the README's walkthrough) and
for the tests, which script its answers. It serves loopback only and keeps everything in
memory; it is never part of a deployment. A little over 300 lines: one server, and each of
Meta's endpoints it stands in for (with what Meta refuses) beside the others.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from interfaces.dev_graph_checks import send_refusal, upload_refusal
from interfaces.dev_graph_history import FakeHistory


def meta_error(
    code: int, message: str, subcode: int | None = None, kind: str = "OAuthException"
) -> dict[str, Any]:
    """An error body as the Graph API writes it."""
    error: dict[str, Any] = {
        "message": message,
        "type": kind,
        "code": code,
        "fbtrace_id": "AbCdEfGhIjK",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


TOKEN_EXPIRED = meta_error(190, "Error validating access token: Session has expired.", 463)
OUTSIDE_WINDOW = meta_error(
    10, "This message is sent outside of allowed window.", 2018278, "OAuthException"
)
USER_UNAVAILABLE = meta_error(551, "This person isn't available right now.", 1545041)
TEMPORARY = meta_error(2, "An unexpected error has occurred. Please retry your request later.")
RATE_LIMITED = meta_error(613, "Calls to this api have exceeded the rate limit.")
ALREADY_REPLIED = meta_error(10900, "Activity already replied to", None, "OAuthException")
"""Meta's answer to a second private reply to one comment."""
NO_SUCH_OBJECT = meta_error(
    100,
    "Unsupported get request. Object with ID does not exist, cannot be loaded due to "
    "missing permissions, or does not support this operation.",
    33,
    "GraphMethodException",
)
"""What the user profile API answers for an IGSID it will not describe."""
PROFILE_FIELDS = frozenset(
    {
        "name",
        "username",
        "profile_pic",
        "follower_count",
        "is_user_follow_business",
        "is_business_follow_user",
        "is_verified_user",
    }
)
"""The fields Meta's user profile API (Instagram API with Instagram Login) serves."""


def invalid_parameter(message: str) -> dict[str, Any]:
    """Meta's refusal of a malformed parameter (code 100)."""
    return meta_error(100, f"(#100) {message}")


PROFILE_FIELDS_SET = ("ice_breakers", "persistent_menu")
"""The `messenger_profile` fields the fake keeps."""


def profile_refusal(body: dict[str, Any]) -> dict[str, Any] | None:
    """Meta's refusal of a malformed `messenger_profile` POST, or None if it is taken:
    the documented limits (4 questions, 20 items, 30-character titles, a `default`
    locale, `web_url` or `postback` items)."""
    fields = [f for f in PROFILE_FIELDS_SET if f in body]
    if not fields:
        return invalid_parameter("Requires one of the params: ice_breakers, persistent_menu")
    for field in fields:
        value = body[field]
        if not isinstance(value, list) or not value:
            return invalid_parameter(f"Param {field} must be a non-empty array")
        locales = [e.get("locale") if isinstance(e, dict) else None for e in value]
        if "default" not in locales:
            return invalid_parameter(f"Param {field} requires a default locale")
        for entry in value:
            actions = entry.get("call_to_actions")
            limit = 4 if field == "ice_breakers" else 20
            if not isinstance(actions, list) or not 1 <= len(actions) <= limit:
                return invalid_parameter(
                    f"Param {field}[call_to_actions] must have a maximum of {limit} items"
                )
            for action in actions:
                if not isinstance(action, dict) or (refusal := _action_refusal(field, action)):
                    return refusal or invalid_parameter(f"Invalid {field} item")
    return None


def _action_refusal(field: str, action: dict[str, Any]) -> dict[str, Any] | None:
    if field == "ice_breakers":
        if set(action) != {"question", "payload"}:
            return invalid_parameter("Each ice breaker needs a question and a payload")
        return None
    kind = action.get("type")
    title = action.get("title")
    if not isinstance(title, str) or len(title) > 30:
        return invalid_parameter("Param title must be at most 30 characters")
    wanted = {"web_url": "url", "postback": "payload"}.get(str(kind))
    if wanted is None or not isinstance(action.get(wanted), str):
        return invalid_parameter("Param type must be one of {web_url, postback} with its value")
    return None


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024
    """The listen backlog: the default 5 resets connections when a dispatcher opens many
    at once, which the dispatcher rightly counts as a send that may have gone (ambiguous)."""


class FakeGraphApi:
    """Serves the user profile API (`GET /{version}/{igsid}?fields=...`), the Send API
    (`POST /{version}/{ig_account_id}/messages`, refusing what Meta refuses:
    `interfaces/dev_graph_checks.py`; whose `recipient: {comment_id}` is a private reply:
    one per comment, a second refused as Meta does), the attachment upload
    (`POST /{version}/{ig_account_id}/message_attachments`), public replies to comments
    (`POST /{version}/{comment_id}/replies`), the Messenger Profile API (`POST` and
    `DELETE /{version}/{ig_account_id or me}/messenger_profile`: ice breakers and the
    persistent menu, kept in `messenger_profile`, scripted by `profile_answers`) and the
    refresh of tokens
    (`GET /refresh_access_token`, which answers `refresh_to` and accepts it from then on,
    or an error when it is None); records every request.

    `answers` holds scripted answers for the next sends, as (status, body), ("sleep",
    seconds), or ("drop", None): the connection closes without an answer, after Meta got
    the request. When it is empty a send succeeds with a new `message_id`.
    """

    def __init__(
        self,
        access_token: str | None,
        profiles: dict[str, dict[str, Any]] | None = None,
        *,
        port: int = 0,
        on_send: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.access_token = access_token
        """The token it takes; None takes any (`dmledger dev fake-graph`)."""
        self.on_send = on_send
        """Called with each send it accepts (the dev command prints them)."""
        self.profiles = profiles or {}
        self.history: FakeHistory | None = None
        """The account's conversations for the Conversations API (a backfill), if set."""
        self.requests: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        """Each send it accepted: `path`, `body` (exactly as received), `token`, `at`
        (time.time() when it came), and `message_id` unless it was a sender action."""
        self.uploads: list[dict[str, Any]] = []
        """Each `/message_attachments` upload it accepted, with the `attachment_id` given."""
        self.answers: deque[tuple[Any, Any]] = deque()
        self.messenger_profile: dict[str, dict[str, Any]] = {}
        """Per Instagram account id: its `messenger_profile` fields, as last set."""
        self.profile_answers: deque[tuple[Any, Any]] = deque()
        """Scripted answers for the next `messenger_profile` changes: (status, body), or
        ("sleep", seconds) before the change is made and answered as usual."""
        self.refresh_to: str | None = None
        self.commenters: dict[str, str] = {}
        """Comment id -> its commenter's IGSID, which a private reply's answer names."""
        self.private_replies: dict[str, dict[str, Any]] = {}
        """The private reply each comment got (Meta takes one)."""
        self.comment_replies: list[dict[str, Any]] = []
        """Public replies to comments, each `{comment_id, message, id}`."""
        self._count = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                fake.requests.append(
                    {
                        "path": parts.path,
                        "query": parse_qs(parts.query),
                        "headers": dict(self.headers),
                    }
                )
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                participant = parts.path.rsplit("/", 1)[-1]
                if parts.path == "/refresh_access_token":
                    self._refresh(parse_qs(parts.query))
                elif not fake.takes(token):
                    self._answer(401, TOKEN_EXPIRED)
                elif fake.history is not None and (
                    history := fake.history.answer(parts.path, parse_qs(parts.query))
                ):
                    self._answer(200, history)
                elif participant in fake.profiles:
                    self._answer(200, fake.profile(participant, parse_qs(parts.query)))
                else:
                    self._answer(400, NO_SUCH_OBJECT)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if len(raw) < length:
                    return  # the client died mid-request: Meta would not have sent it either
                body = json.loads(raw or b"{}")
                parts = urlsplit(self.path)
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if parts.path.endswith("/messenger_profile"):
                    self._profile("POST", parts.path, parse_qs(parts.query), body, token)
                    return
                record = {"path": parts.path, "body": body, "token": token, "at": time.time()}
                fake.requests.append(record)
                if fake.answers:
                    kind, value = fake.answers.popleft()
                    if kind == "sleep":
                        time.sleep(value)
                    elif kind == "drop":
                        self.close_connection = True
                        return
                    else:
                        self._answer(kind, value)
                        return
                if not fake.takes(token):
                    self._answer(401, TOKEN_EXPIRED)
                    return
                if parts.path.endswith("/message_attachments"):
                    self._upload(record)
                    return
                refused = None if parts.path.endswith("/replies") else send_refusal(body)
                if refused is not None:
                    self._answer(400, meta_error(100, refused))
                    return
                fake._count += 1
                if parts.path.endswith("/replies"):
                    self._public_reply(parts.path, body)
                    return
                recipient = body.get("recipient") or {}
                comment_id = recipient.get("comment_id")
                if comment_id is not None and comment_id in fake.private_replies:
                    self._answer(400, ALREADY_REPLIED)
                    return
                message_id = f"m_fake{fake._count}"
                if "sender_action" in body:  # Meta names no message for an action
                    fake.sent.append(record)
                    if fake.on_send is not None:
                        fake.on_send(record)
                    self._answer(200, {"recipient_id": body["recipient"]["id"]})
                    return
                fake.sent.append({**record, "message_id": message_id})
                if fake.on_send is not None:
                    fake.on_send({**record, "message_id": message_id})
                if comment_id is not None:
                    fake.private_replies[comment_id] = {**record, "message_id": message_id}
                    answer = {"message_id": message_id}
                    if comment_id in fake.commenters:
                        answer = {"recipient_id": fake.commenters[comment_id], **answer}
                    self._answer(200, answer)
                    return
                self._answer(200, {"recipient_id": recipient["id"], "message_id": message_id})

            def _public_reply(self, path: str, body: dict[str, Any]) -> None:
                comment_id = path.rstrip("/").split("/")[-2]
                made = f"1790000000{fake._count:07d}"
                fake.comment_replies.append(
                    {"comment_id": comment_id, "message": body.get("message"), "id": made}
                )
                self._answer(200, {"id": made})

            def do_DELETE(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                parts = urlsplit(self.path)
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if not parts.path.endswith("/messenger_profile"):
                    self._answer(400, NO_SUCH_OBJECT)
                    return
                self._profile("DELETE", parts.path, parse_qs(parts.query), body, token)

            def _profile(
                self,
                method: str,
                path: str,
                query: dict[str, list[str]],
                body: dict[str, Any],
                token: str,
            ) -> None:
                # `/{version}/me/messenger_profile` or `/{version}/{ig_id}/messenger_profile`.
                owner = path.rsplit("/", 2)[-2]
                fake.requests.append(
                    {"method": method, "path": path, "query": query, "body": body, "token": token}
                )
                if fake.profile_answers:
                    kind, value = fake.profile_answers.popleft()
                    if kind != "sleep":
                        self._answer(kind, value)
                        return
                    time.sleep(value)
                if not fake.takes(token):
                    self._answer(401, TOKEN_EXPIRED)
                    return
                kept = fake.messenger_profile.setdefault(owner, {})
                if method == "DELETE":
                    fields = body.get("fields")
                    if not isinstance(fields, list) or not fields:
                        self._answer(400, invalid_parameter("Requires the param fields"))
                        return
                    for field in fields:
                        kept.pop(field, None)
                else:
                    if body.get("platform") != "instagram" and query.get("platform") != [
                        "instagram"
                    ]:
                        self._answer(400, invalid_parameter("Requires platform=instagram"))
                        return
                    refusal = profile_refusal(body)
                    if refusal is not None:
                        self._answer(400, refusal)
                        return
                    kept.update({f: body[f] for f in PROFILE_FIELDS_SET if f in body})
                self._answer(200, {"result": "success"})

            def _upload(self, record: dict[str, Any]) -> None:
                refused = upload_refusal(record["body"])
                if refused is not None:
                    self._answer(400, meta_error(100, refused))
                    return
                fake._count += 1
                attachment_id = str(1_000_000_000 + fake._count)
                fake.uploads.append({**record, "attachment_id": attachment_id})
                self._answer(200, {"attachment_id": attachment_id})

            def _refresh(self, query: dict[str, list[str]]) -> None:
                if query.get("access_token") != [fake.access_token] or not fake.refresh_to:
                    self._answer(400, TOKEN_EXPIRED)
                    return
                fake.access_token = fake.refresh_to
                self._answer(
                    200,
                    {
                        "access_token": fake.refresh_to,
                        "token_type": "bearer",
                        "expires_in": 5183944,
                    },
                )

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                # The client may have gone first (a test that stops a dispatcher mid-push).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(raw)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def profile(self, participant: str, query: dict[str, list[str]]) -> dict[str, Any]:
        """What the user profile API answers: the fields asked for (null where the person
        has none, as Meta does), and the id."""
        asked = ",".join(query.get("fields", [])).split(",")
        known = self.profiles[participant]
        answer = {field: known.get(field) for field in asked if field in PROFILE_FIELDS}
        return {**answer, "id": participant}

    def takes(self, token: str) -> bool:
        """Whether a request with this bearer token is let through."""
        return self.access_token is None or token == self.access_token

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
