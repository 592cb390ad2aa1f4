"""`AsyncClient`: `Client` for asyncio, with the same methods and the same guarantees."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx

from hookstream_client._api import (
    DEFAULT_HEARTBEAT,
    DEFAULT_TIMEOUT,
    Call,
    account_call,
    answer,
    base_url_of,
    body_of,
    error_from,
    headers_for,
    lines_answer,
    lines_call,
    transport_message,
)
from hookstream_client._feed import (
    Backoff,
    EpochCallback,
    PollState,
    PrunedCallback,
    StatusCallback,
    StreamState,
    Watch,
    ignore_status,
    parse_page,
    retry_after,
)
from hookstream_client.cursor import CursorStore
from hookstream_client.errors import (
    CursorAhead,
    EpochChanged,
    TransportError,
)
from hookstream_client.models import Account, Event, LinesPage, Page, StreamToken, Webhook


class AsyncClient:
    """An asyncio client for one API key (the same methods as `Client`, awaited)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url_of(base_url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers_for(api_key), timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: Call) -> httpx.Response:
        try:
            read = call.read_timeout
            timeout = httpx.USE_CLIENT_DEFAULT if read is None else httpx.Timeout(DEFAULT_TIMEOUT, read=read)
            return await self._http.request(
                call.method, call.path, params=call.params, json=call.body, headers=call.headers, timeout=timeout
            )
        except httpx.TransportError as exc:
            raise TransportError(transport_message(exc, self.base_url)) from exc

    async def _request(self, call: Call) -> Any:
        return answer(await self._send(call))

    # Accounts (SPEC §5.1)

    async def create_account(
        self, account_id: str | None = None, *, name: str | None = None, connector: str | None = None
    ) -> Account:
        return Account.from_json(await self._request(account_call(account_id, name, connector)))

    async def list_accounts(self) -> list[Account]:
        return [Account.from_json(a) for a in await self._request(Call("GET", "/v2/accounts"))]

    async def get_account(self, account_id: str) -> Account:
        return Account.from_json(await self._request(Call("GET", f"/v2/accounts/{account_id}")))

    async def delete_account(self, account_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(Call("DELETE", f"/v2/accounts/{account_id}"))
        return result

    async def usage(self, account_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(Call("GET", f"/v2/accounts/{account_id}/usage"))
        return result

    # Webhooks (SPEC §5.2, §5.5, §8)

    async def create_webhook(
        self,
        account_id: str,
        *,
        url: str | None = None,
        events: list[str] | None = None,
        compressed_delivery: bool | None = None,
        **fields: Any,
    ) -> Webhook:
        body = body_of(account_id=account_id, url=url, events=events, compressed_delivery=compressed_delivery, **fields)
        return Webhook.from_json(await self._request(Call("POST", "/v2/webhooks", body=body)))

    async def list_webhooks(self, account_id: str | None = None) -> list[Webhook]:
        params = body_of(account_id=account_id) or None
        return [Webhook.from_json(w) for w in await self._request(Call("GET", "/v2/webhooks", params=params))]

    async def get_webhook(self, webhook_id: str) -> Webhook:
        return Webhook.from_json(await self._request(Call("GET", f"/v2/webhooks/{webhook_id}")))

    async def update_webhook(
        self,
        webhook_id: str,
        *,
        events: list[str] | None = None,
        url: str | None = None,
        compressed_delivery: bool | None = None,
        **fields: Any,
    ) -> Webhook:
        body = body_of(events=events, url=url, compressed_delivery=compressed_delivery, **fields)
        return Webhook.from_json(await self._request(Call("PATCH", f"/v2/webhooks/{webhook_id}", body=body)))

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._request(Call("DELETE", f"/v2/webhooks/{webhook_id}"))

    async def stop_webhook(self, webhook_id: str) -> Webhook:
        return Webhook.from_json(await self._request(Call("POST", f"/v2/webhooks/{webhook_id}/stop")))

    async def start_webhook(self, webhook_id: str) -> Webhook:
        return Webhook.from_json(await self._request(Call("POST", f"/v2/webhooks/{webhook_id}/start")))

    async def rotate_secret(self, webhook_id: str, **fields: Any) -> Webhook:
        call = Call("POST", f"/v2/webhooks/{webhook_id}/rotate-secret", body=body_of(**fields) or None)
        return Webhook.from_json(await self._request(call))

    async def test_webhook(self, webhook_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(Call("POST", f"/v2/webhooks/{webhook_id}/test"))
        return result

    async def mock_payload(self, event_type: str) -> Event:
        return Event.from_json(
            await self._request(Call("POST", "/v2/webhooks/mock-payload", body={"type": event_type}))
        )

    async def stream_token(self, webhook_id: str) -> StreamToken:
        data = await self._request(Call("POST", f"/v2/webhooks/{webhook_id}/stream-token"))
        return StreamToken(data["token"], data["expires_at"], data["stream_url"])

    async def attempts(
        self, webhook_id: str, *, limit: int | None = None, before: int | None = None, outcome: str | None = None
    ) -> dict[str, Any]:
        params = body_of(limit=limit, before=before, outcome=outcome) or None
        result: dict[str, Any] = await self._request(Call("GET", f"/v2/webhooks/{webhook_id}/attempts", params=params))
        return result

    async def undelivered(self, webhook_id: str) -> list[dict[str, Any]]:
        """The feed events of a custom-mode webhook with no successful delivery, in seq order (SPEC §8.1)."""
        result: list[dict[str, Any]] = await self._request(Call("GET", f"/v2/webhooks/{webhook_id}/undelivered"))
        return result

    async def recover(
        self, webhook_id: str, *, after_seq: int | None = None, since: str | None = None
    ) -> dict[str, Any]:
        body = body_of(afterSeq=after_seq, since=since)
        result: dict[str, Any] = await self._request(Call("POST", f"/v2/webhooks/{webhook_id}/recover", body=body))
        return result

    async def event_types(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request(Call("GET", "/v2/event-types"))
        return result

    # Reading the feed (SPEC §5.3, §5.4)

    async def poll(
        self, webhook_id: str, *, after: int | None = None, limit: int | None = None, wait: float | None = None
    ) -> Page:
        """One polling page of the feed after `after`."""
        params = body_of(afterSeq=after, limit=limit, wait=wait)
        return parse_page(
            answer(await self._send(Call("GET", f"/v2/webhooks/{webhook_id}/events", params)), whole=True)
        )

    async def poll_lines(
        self, webhook_id: str, *, after: int | None = None, limit: int | None = None, wait: float | None = None
    ) -> LinesPage:
        """One polling page as JSON Lines (see `Client.poll_lines`)."""
        return lines_answer(await self._send(lines_call(webhook_id, after, limit, wait)))

    async def events(
        self,
        webhook_id: str,
        *,
        after: int | None = None,
        cursor: CursorStore | None = None,
        follow: bool = False,
        limit: int = 1000,
        wait: float = 30.0,
        epoch: str | None = None,
        on_pruned: PrunedCallback | None = None,
        on_epoch_change: EpochCallback | None = None,
    ) -> AsyncIterator[Event]:
        """Every feed event after `after` (or the cursor's seq), page by page; long-polls for more when `follow`.

        A pruned gap or a new epoch raises `FeedPruned` / `EpochChanged`, unless a callback is given:
        then the callback is told and the feed goes on (from seq 0 of the new log, after an epoch change).
        """
        state = PollState(
            Watch(after, cursor, epoch, on_pruned, on_epoch_change), limit=limit, follow=follow, wait=wait
        )
        path = f"/v2/webhooks/{webhook_id}/events"
        backoff = Backoff()
        answered = False
        timeout = httpx.Timeout(DEFAULT_TIMEOUT, read=wait + DEFAULT_TIMEOUT)
        while True:
            try:
                response = await self._http.get(path, params=state.params(), timeout=timeout)
            except httpx.TransportError as exc:
                if not answered:
                    raise TransportError(transport_message(exc, self.base_url)) from exc
                await asyncio.sleep(backoff.next())
                continue
            answered = True
            if response.status_code in (429, 503):
                await asyncio.sleep(backoff.next(retry_after(response.headers)))
                continue
            try:
                page = parse_page(answer(response, whole=True))
            except CursorAhead as exc:
                if state.watch.epoch_changed(EpochChanged(state.watch.epoch, None)):
                    continue
                raise exc  # pragma: no cover - epoch_changed raises when it does not go on
            backoff.reset()
            events = state.take(page)
            if events is None:
                continue
            for event in events:
                state.watch.seq = event.seq
                yield event
            if state.done:
                return

    async def stream(
        self,
        webhook_id: str,
        *,
        after: int | None = None,
        cursor: CursorStore | None = None,
        heartbeat: float = DEFAULT_HEARTBEAT,
        epoch: str | None = None,
        on_pruned: PrunedCallback | None = None,
        on_epoch_change: EpochCallback | None = None,
        on_status: StatusCallback | None = None,
    ) -> AsyncIterator[Event]:
        """Every feed event after `after` (or the cursor's seq; neither: from now on), over SSE, until the
        webhook is stopped (204). Reconnects with `Last-Event-ID` on a dropped connection, on silence longer
        than three `heartbeat`s (the server's HOOKSTREAM_HEARTBEAT_SECONDS), after a 429 or 503."""
        state = StreamState(Watch(after, cursor, epoch, on_pruned, on_epoch_change))
        path = f"/v2/webhooks/{webhook_id}/stream"
        timeout = httpx.Timeout(DEFAULT_TIMEOUT, read=3 * heartbeat)
        backoff = Backoff(base=state.retry_seconds)
        answered = False
        status = on_status or ignore_status
        while True:
            try:
                async with self._http.stream("GET", path, headers=state.headers(), timeout=timeout) as response:
                    answered = True
                    if response.status_code == 204:
                        status("stopped", None)
                        return
                    if response.status_code in (429, 503):
                        await response.aread()
                        delay = backoff.next(retry_after(response.headers) or state.retry_seconds)
                        status("waiting", f"{response.status_code}, retrying in {delay:.1f}s")
                        await asyncio.sleep(delay)
                        continue
                    if response.status_code != 200:
                        await response.aread()
                        error = error_from(response)
                        if isinstance(error, CursorAhead):
                            if state.watch.epoch_changed(EpochChanged(state.watch.epoch, None)):
                                continue
                        raise error
                    if not state.opened(response.headers):
                        continue
                    status("connected", None)
                    backoff.reset()
                    async for chunk in response.aiter_bytes():
                        for event in state.events(chunk):
                            yield event
                            state.delivered(event)
            except httpx.TransportError as exc:
                if not answered:
                    raise TransportError(transport_message(exc, self.base_url)) from exc
                delay = backoff.next(state.retry_seconds if backoff.failures == 0 else None)
                status("reconnecting", f"{transport_message(exc, self.base_url)} Retrying in {delay:.1f}s")
                await asyncio.sleep(delay)
                continue
            # The server ended the stream (a restart, a stop, a slow-reader cut): resume from the cursor.
            delay = backoff.next(state.retry_seconds)
            status("reconnecting", f"the server closed the stream; retrying in {delay:.1f}s")
            await asyncio.sleep(delay)
