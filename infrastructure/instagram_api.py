"""Meta's Send API for Instagram (`POST /{ig-account-id}/messages`, private replies to
comments among them), public replies to comments (`POST /{comment-id}/replies`) and the
Messenger Profile API (`/{ig-account-id}/messenger_profile`: ice breakers, persistent menu)
over httpx."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from application.delivery import MetaError, SendResult
from application.ports import ProfileAnswer
from infrastructure.loop_clients import close_from_outside
from infrastructure.outgoing_tls import outgoing_tls

TIMEOUT = httpx.Timeout(15.0)


class InstagramGraphClient:
    """`InstagramSendApi` over HTTP: pooled keep-alive connections, 15 s timeouts,
    never following redirects."""

    def __init__(self, base_url: str, version: str) -> None:
        self._base = f"{base_url.rstrip('/')}/{version}"
        self._root = base_url.rstrip("/")
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        # Created on first use, inside the event loop that uses it (again after a close).
        if self._client is None or self._client.is_closed:
            self._loop = asyncio.get_running_loop()
            self._client = httpx.AsyncClient(
                timeout=TIMEOUT,
                follow_redirects=False,
                verify=outgoing_tls(),
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
            )
        return self._client

    async def send(
        self,
        *,
        ig_account_id: str,
        access_token: str,
        recipient_id: str,
        text: str | None,
        attachment: dict[str, str] | None,
        tag: str | None,
        message: dict[str, Any] | None = None,
    ) -> SendResult:
        fields: dict[str, Any]
        if message is not None:
            fields = message
        elif attachment:
            url = {"url": attachment["url"]}
            fields = {"message": {"attachment": {"type": attachment["type"], "payload": url}}}
        else:
            fields = {"message": {"text": text or ""}}
        body: dict[str, Any] = {"recipient": {"id": recipient_id}, **fields}
        if tag and "message" in body:
            body["messaging_type"] = "MESSAGE_TAG"
            body["tag"] = tag
        return await self._post(f"{self._base}/{ig_account_id}/messages", body, access_token)

    async def send_private_reply(
        self, *, ig_account_id: str, access_token: str, comment_id: str, text: str
    ) -> SendResult:
        body = {"recipient": {"comment_id": comment_id}, "message": {"text": text}}
        return await self._post(f"{self._base}/{ig_account_id}/messages", body, access_token)

    async def reply_to_comment(
        self, *, access_token: str, comment_id: str, text: str
    ) -> SendResult:
        return await self._post(
            f"{self._base}/{comment_id}/replies", {"message": text}, access_token
        )

    async def _post(self, url: str, body: dict[str, Any], access_token: str) -> SendResult:
        try:
            response = await self._http().post(
                url, json=body, headers={"Authorization": f"Bearer {access_token}"}
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            return SendResult(transport="not_sent", detail=type(error).__name__)
        except httpx.TimeoutException as error:
            # The request went out: Meta may have sent the message.
            return SendResult(transport="timed_out", detail=type(error).__name__)
        except httpx.HTTPError as error:
            return SendResult(transport="timed_out", detail=type(error).__name__)
        return _result(response)

    async def upload_attachment(
        self, *, ig_account_id: str, access_token: str, media_type: str, url: str
    ) -> str | SendResult:
        body = {
            "platform": "instagram",
            "message": {
                "attachment": {"type": media_type, "payload": {"url": url, "is_reusable": True}}
            },
        }
        try:
            response = await self._http().post(
                f"{self._base}/{ig_account_id}/message_attachments",
                json=body,
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            return SendResult(transport="not_sent", detail=type(error).__name__)
        except httpx.HTTPError as error:
            # Nothing is sent to the participant by an upload: trying again is harmless.
            return SendResult(transport="not_sent", detail=type(error).__name__)
        attachment_id = json_of(response).get("attachment_id")
        if response.status_code == 200 and isinstance(attachment_id, str | int):
            return str(attachment_id)
        result = _result(response)
        if result.error is None:  # 200 without an id: not an answer we can use
            return SendResult(
                transport="answered",
                status_code=502,
                error=MetaError(None, None, "the upload answered without an attachment_id"),
                detail="the upload answered without an attachment_id",
            )
        return result

    async def refresh_token(self, access_token: str) -> tuple[str, int] | MetaError:
        try:
            response = await self._http().get(
                f"{self._root}/refresh_access_token",
                params={"grant_type": "ig_refresh_token", "access_token": access_token},
            )
        except httpx.HTTPError as error:
            return MetaError(code=None, subcode=None, message=f"no answer: {type(error).__name__}")
        payload = json_of(response)
        if response.status_code == 200 and isinstance(payload.get("access_token"), str):
            return payload["access_token"], int(payload.get("expires_in") or 0)
        return meta_error_of(payload) or MetaError(None, None, f"HTTP {response.status_code}")

    async def set_messenger_profile(
        self, *, ig_account_id: str, access_token: str, body: dict[str, Any]
    ) -> ProfileAnswer:
        return await self._profile("POST", ig_account_id, access_token, {}, body)

    async def delete_messenger_profile(
        self, *, ig_account_id: str, access_token: str, fields: list[str]
    ) -> ProfileAnswer:
        # Meta's documented DELETE carries the fields in a JSON body, the platform in the query.
        query = {"platform": "instagram"}
        return await self._profile("DELETE", ig_account_id, access_token, query, {"fields": fields})

    async def _profile(
        self,
        method: str,
        ig_account_id: str,
        access_token: str,
        query: dict[str, str],
        body: dict[str, Any],
    ) -> ProfileAnswer:
        try:
            response = await self._http().request(
                method,
                f"{self._base}/{ig_account_id}/messenger_profile",
                params=query,
                json=body,
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except httpx.HTTPError as error:
            failure = MetaError(None, None, f"no answer: {type(error).__name__}")
            return ProfileAnswer(applied=False, error=failure)
        payload = json_of(response)
        if response.status_code == 200 and payload.get("result") == "success":
            return ProfileAnswer(applied=True, status_code=200)
        return ProfileAnswer(
            applied=False, error=meta_error_of(payload), status_code=response.status_code
        )

    @property
    def closed(self) -> bool:
        """No connection is open (none was made, or the client was closed)."""
        return self._client is None or self._client.is_closed

    async def aclose(self) -> None:
        """Close the connections, in the event loop that made them (a later use makes
        new ones)."""
        if self._client is not None:
            await self._client.aclose()

    def close(self) -> None:
        """Close the connections from outside their event loop (`Services.close`)."""
        if self._client is not None and self._loop is not None:
            close_from_outside(self._client, self._loop)


def json_of(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or {} if it is not one."""
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def meta_error_of(payload: dict[str, Any]) -> MetaError | None:
    """Meta's `error` object in an answer, or None if it has none."""
    error = payload.get("error")
    if not isinstance(error, dict):
        return None
    return MetaError(
        code=error.get("code") if isinstance(error.get("code"), int) else None,
        subcode=error.get("error_subcode") if isinstance(error.get("error_subcode"), int) else None,
        message=str(error.get("message") or "")[:1000],
        fbtrace_id=error.get("fbtrace_id"),
        type=error.get("type"),
    )


def _regain_seconds(response: httpx.Response) -> int | None:
    """`estimated_time_to_regain_access` (minutes) from Meta's usage headers."""
    for header in ("x-business-use-case-usage", "x-app-usage"):
        raw = response.headers.get(header)
        if not raw:
            continue
        try:
            usage = json.loads(raw)
        except ValueError:
            continue
        entries = (
            [e for v in usage.values() for e in (v if isinstance(v, list) else [v])]
            if isinstance(usage, dict)
            else []
        )
        minutes = [e.get("estimated_time_to_regain_access") for e in entries if isinstance(e, dict)]
        known = [m for m in minutes if isinstance(m, int) and m > 0]
        if known:
            return max(known) * 60
    return None


def _result(response: httpx.Response) -> SendResult:
    payload = json_of(response)
    error = meta_error_of(payload)
    # A message's answer names it `message_id`; a new comment's (a public reply), `id`.
    made = payload.get("message_id", payload.get("id"))
    return SendResult(
        transport="answered",
        status_code=response.status_code,
        message_id=made if error is None and isinstance(made, str) else None,
        error=error,
        regain_access_seconds=_regain_seconds(response),
        detail="" if error is None else error.message,
    )
