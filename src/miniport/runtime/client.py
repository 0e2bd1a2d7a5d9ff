"""``RuntimeClient``: the wx background-data API over Miniport's runtime HTTP API and event
stream, with a local cache; and custom analytics (``report_analytics``, ``report_event`` and the
codeless page-lifecycle hooks, which also report the built-in events ``$launch``, ``$show``,
``$hide``, ``$pageview``, ``$pageleave``; the host's ``system`` properties and the runtime's
``$session`` go with every batch as its ``context``: see ``miniport.runtime.analytics``).

    client = RuntimeClient(base_url, appid, runtime_token, cache_path="cache.json",
                           system={"$platform": "android", "$model": "Pixel 8"})
    await client.launch(path="pages/index/index", query="id=1", scene=1001)
    data = await client.get_background_fetch_data("pre", wait_ms=2000)
    client.on_background_fetch_data(lambda res: print(res["fetchedData"]))
    await client.connect()          # event stream: new data arrives without asking
    ...
    await client.close()

Results use WeChat's field names (``fetchedData``, ``timeStamp``, ``path``, ``query``, ``scene``,
``errMsg``). A failure raises RuntimeAPIError carrying the ``errMsg``.

The local cache keeps the newest data of each fetch type (from reads and from the event stream,
and on disk when ``cache_path`` is given), so ``get_background_fetch_data(..., cached=True)`` at
launch needs no round trip when data is already there."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from .analytics import RETRY_AFTER_STATUSES, RuntimeAnalytics, backoff
from .transport import RuntimeAPIError, retry_after_seconds

log = logging.getLogger("miniport.runtime")
Listener = Callable[[dict[str, Any]], Any]
STREAM_RETRY_S = (0.5, 15.0)  # the event stream's first and longest reconnect delay


class RuntimeClient:
    def __init__(
        self,
        base_url: str,
        appid: str,
        token: str,
        *,
        cache_path: str | os.PathLike[str] | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] | None = None,
        analytics_queue_path: str | os.PathLike[str] | None = None,
        analytics_batch_size: int = 50,
        analytics_flush_interval_s: float = 5.0,
        analytics_retry_base_s: float = 1.0,
        analytics_retry_max_s: float = 60.0,
        app_data: Mapping[str, Any] | None = None,
        system: Mapping[str, Any] | None = None,
        builtin_events: bool = True,
        rand: Callable[[], float] | None = None,
    ) -> None:
        """``rand``: the random source of the analytics' retries and the event stream's
        reconnects (their jitter), a number in [0, 1); default ``random.random``."""
        self.base_url = base_url.rstrip("/")
        self.appid = appid
        self.token = token
        self.cache_path = Path(cache_path) if cache_path else None
        self._session = session
        self._own_session = session is None
        self._listeners: list[Listener] = []
        self._other_listeners: dict[str, list[Listener]] = {}
        self._stream: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._was_connected = False
        self._refused = False  # the token was refused since the stream was last open
        self._refresh: asyncio.Task[Any] | None = None
        self._clock = clock or time.time
        self._rand = rand or random.random
        # the wait before the event stream's next reconnect, jitter included (0 while it opens)
        self.reconnect_wait_s = 0.0
        self.cache: dict[str, dict[str, Any]] = self._load_cache()
        self.analytics = RuntimeAnalytics(
            _ClientTransport(self),
            appid,
            queue_path=analytics_queue_path,
            batch_size=analytics_batch_size,
            flush_interval_s=analytics_flush_interval_s,
            retry_base_s=analytics_retry_base_s,
            retry_max_s=analytics_retry_max_s,
            clock=clock,
            app_data=app_data,
            system=system,
            builtin_events=builtin_events,
            rand=self._rand,
        )

    # --- plumbing ---
    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _url(self, path: str) -> str:
        return f"{self.base_url}/runtime/v1/apps/{self.appid}{path}"

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def _call(self, method: str, path: str, api: str, **kw: Any) -> dict[str, Any]:
        headers = kw.pop("headers", None) or self._headers
        try:
            async with self.session.request(method, path, headers=headers, **kw) as resp:
                try:
                    parsed = await resp.json(content_type=None)
                except ValueError:  # an HTML 502 from a proxy, an empty 503
                    parsed = None
                body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
                if resp.status >= 400:
                    message = body.get("message") or f"HTTP {resp.status}"
                    raise RuntimeAPIError(
                        str(body.get("errMsg") or f"{api}:fail {message}"),
                        resp.status,
                        body.get("error"),
                        self._retry_after(resp),
                    )
                if not isinstance(parsed, dict):  # as undelivered as a lost answer: sent again
                    raise RuntimeAPIError(f"{api}:fail the answer is not JSON", 0, "network")
                return body
        except aiohttp.ClientError as exc:
            raise RuntimeAPIError(f"{api}:fail network error: {exc}", 0, "network") from exc

    def _retry_after(self, resp: aiohttp.ClientResponse) -> float | None:
        """The answer's ``Retry-After``, in seconds from now (None: none, or unreadable)."""
        headers = resp.headers
        return retry_after_seconds(headers.get("Retry-After"), headers.get("Date"), self._clock())

    def _load_cache(self) -> dict[str, dict[str, Any]]:
        if self.cache_path is None or not self.cache_path.exists():
            return {}
        try:
            data = json.loads(self.cache_path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _remember(self, fetch_type: str, result: dict[str, Any]) -> None:
        current = self.cache.get(fetch_type)
        if current is not None and current.get("timeStamp", 0) > result.get("timeStamp", 0):
            return
        self.cache[fetch_type] = {k: v for k, v in result.items() if k != "errMsg"}
        if self.cache_path is not None:  # a copy for offline starts: its failure is logged
            tmp = self.cache_path.with_suffix(".tmp")  # (a read answered, a push delivered)
            try:
                tmp.write_text(json.dumps(self.cache))
                os.replace(tmp, self.cache_path)
            except OSError as exc:
                log.warning("cannot keep background data in %s: %s", self.cache_path, exc)

    # --- the wx API ---
    async def launch(
        self, path: str = "", query: str | dict[str, Any] = "", scene: int = 1001
    ) -> dict[str, Any]:
        """Report a cold start; the platform pre-fetches at once. Analytics: the configuration
        is fetched (the one last received is kept when that fails), ``launch`` triggers fire,
        and reports left queued by an earlier run are sent. The launch goes out first, beside
        the configuration's request: sent after it, every pre-fetch started one round trip
        late (or never, behind a configuration request that hung)."""
        launched = asyncio.ensure_future(
            self._call(
                "POST",
                self._url("/launch"),
                "launch",
                json={"path": path, "query": query, "scene": scene},
            )
        )
        try:
            await self.analytics.refresh_config()
            self.analytics.launch(path, query, scene)
            self.analytics.flush_soon()
        finally:
            answer = await launched  # its error (or the configuration's) reaches the caller
        return answer

    async def login(self) -> dict[str, Any]:
        """wx.login: ``{"code", "errMsg"}``; the code is exchanged at /sns/jscode2session."""
        return await self._call("POST", self._url("/login"), "login")

    async def set_background_fetch_token(self, token: str) -> dict[str, Any]:
        return await self._call(
            "POST",
            self._url("/background-fetch/token"),
            "setBackgroundFetchToken",
            json={"token": token},
        )

    async def get_background_fetch_token(self) -> dict[str, Any]:
        return await self._call(
            "GET", self._url("/background-fetch/token"), "getBackgroundFetchToken"
        )

    async def get_background_fetch_data(
        self, fetch_type: str = "periodic", *, wait_ms: int = 0, cached: bool = False
    ) -> dict[str, Any]:
        """``cached=True`` answers from the local cache when it has data (no round trip)."""
        if cached and fetch_type in self.cache:
            return {**self.cache[fetch_type], "errMsg": "getBackgroundFetchData:ok"}
        params = {"fetchType": fetch_type, "waitMs": str(wait_ms)}
        result = await self._call(
            "GET", self._url("/background-fetch/data"), "getBackgroundFetchData", params=params
        )
        self._remember(fetch_type, result)
        return result

    def on_background_fetch_data(self, listener: Listener) -> None:
        """Called with ``{fetchType, fetchedData, timeStamp, path, query, scene}`` when new data
        arrives on the event stream (call ``connect()``)."""
        self._listeners.append(listener)

    def on(self, message_type: str, listener: Listener) -> None:
        """Listen to any other event-stream message (``devtoolsRefresh``, analytics config...).
        ``unauthorized``: the platform refuses the runtime token (revoked, expired), heard once
        until the stream is open again; set ``token`` to a new one and the stream reconnects
        with it."""
        self._other_listeners.setdefault(message_type, []).append(listener)

    # --- analytics (see miniport.runtime.analytics) ---
    def report_analytics(self, event_name: str, data: Mapping[str, Any] | None = None) -> str:
        """wx.reportAnalytics: queue a report; returns the event's id."""
        return self.analytics.report_analytics(event_name, data)

    def report_event(self, event_id: int | str, data: Mapping[str, Any] | None = None) -> str:
        """wx.reportEvent: queue a report of an event by its numeric id."""
        return self.analytics.report_event(event_id, data)

    def update_system(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """A system property changed (the network, say): later batches carry the new value.
        Returns the properties now in force."""
        return self.analytics.update_system(changes)

    async def flush_analytics(self) -> dict[str, Any]:
        """Send the queued reports now."""
        return await self.analytics.flush()

    def page_load(
        self, page: str, data: Mapping[str, Any] | None = None, query: Any = None
    ) -> list[dict[str, Any]]:
        return self.analytics.page_load(page, data, query)

    def page_show(self, page: str, query: Any = None) -> list[dict[str, Any]]:
        return self.analytics.page_show(page, query)

    def page_hide(self, page: str) -> list[dict[str, Any]]:
        return self.analytics.page_hide(page)

    def page_unload(self, page: str) -> list[dict[str, Any]]:
        return self.analytics.page_unload(page)

    def click(self, page: str, element: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        """A tap on an element: ``{"id", "classes", "dataset", "indexes"}``."""
        return self.analytics.click(page, element)

    def switch_tab(self, page: str) -> list[dict[str, Any]]:
        return self.analytics.switch_tab(page)

    def pull_down_refresh(self, page: str) -> list[dict[str, Any]]:
        return self.analytics.pull_down_refresh(page)

    def background(self) -> list[dict[str, Any]]:
        return self.analytics.background()

    def foreground(self) -> list[dict[str, Any]]:
        return self.analytics.foreground()

    def share(self, page: str | None = None) -> list[dict[str, Any]]:
        return self.analytics.share(page)

    def set_page_data(self, page: str, data: Mapping[str, Any]) -> None:
        self.analytics.set_page_data(page, data)

    def set_app_data(self, data: Mapping[str, Any]) -> None:
        self.analytics.set_app_data(data)

    # --- the event stream ---
    async def connect(self, timeout_s: float = 10) -> None:
        """Open the event stream in the background (reconnecting), and wait until it is up."""
        if self._stream is None:
            self._stream = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    async def _listen(self) -> None:
        """Keep the stream open. A reconnect waits a doubling delay (0.5 s to 15 s) with
        jitter, at least a 429's or 503's ``Retry-After`` (:func:`~.analytics.backoff`): after
        a node restarts, its 10,000 devices do not all come back at the same instants."""
        delay = 0.0  # the last reconnect's backoff; 0 once the stream opened
        while True:
            retry_after: float | None = None
            try:
                async with self.session.get(
                    f"{self.base_url}/runtime/v1/events",
                    params={"appid": self.appid},  # this app's messages only
                    headers=self._headers,
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
                ) as resp:
                    if resp.status == 401:  # revoked or expired: the host needs a new one
                        await self._unauthorized(await _json_object(resp))
                    if resp.status != 200:
                        raise RuntimeAPIError(
                            f"event stream refused: HTTP {resp.status}", resp.status,
                            retry_after_s=self._retry_after(resp),
                        )  # fmt: skip
                    delay = 0.0
                    event = None
                    async for raw in resp.content:
                        line = raw.decode().rstrip("\r\n")
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:") and event:
                            await self._dispatch(event, json.loads(line[5:]))
                        elif not line:
                            event = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect with backoff
                log.debug("event stream dropped: %s", exc)
                if isinstance(exc, RuntimeAPIError) and exc.status in RETRY_AFTER_STATUSES:
                    retry_after = exc.retry_after_s
            self._connected.clear()
            delay, self.reconnect_wait_s = backoff(delay, *STREAM_RETRY_S, retry_after, self._rand)
            await asyncio.sleep(self.reconnect_wait_s)
            self.reconnect_wait_s = 0.0

    async def _unauthorized(self, message: dict[str, Any]) -> None:
        """The platform refuses the runtime token (revoked, expired): ``unauthorized``
        listeners hear it once (the stream's last message, or a refused reconnect), until a
        stream opens again; the stream keeps reconnecting with backoff, with ``token`` as it
        is then (set a new one)."""
        if self._refused:
            return
        self._refused = True
        message = {"type": "unauthorized", **message}
        for listener in list(self._other_listeners.get("unauthorized", ())):
            await _call_listener(listener, message)

    async def _dispatch(self, event: str, message: dict[str, Any]) -> None:
        if event == "unauthorized":
            await self._unauthorized(message)
            return
        if event == "connected":
            self._refused = False
            self._connected.set()
            if self._was_connected:  # a reconnect: configurations may have changed meanwhile
                self._refresh = asyncio.create_task(self.analytics.refresh_config())
            self._was_connected = True
            return
        if event == "analyticsConfig":
            self.analytics.on_config_message(message)
        if event == "backgroundFetchData" and message.get("appid") == self.appid:
            result = {
                k: message.get(k)
                for k in ("fetchType", "fetchedData", "timeStamp", "path", "query", "scene")
            }
            self._remember(str(result["fetchType"]), result)
            for listener in list(self._listeners):
                await _call_listener(listener, result)
        for listener in list(self._other_listeners.get(event, ())):
            await _call_listener(listener, message)

    async def close(self) -> None:
        """Stop the event stream; queued analytics get one last try (what is left stays in
        the queue file)."""
        await self.analytics.close()
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
        if self._stream is not None:
            self._stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stream
            self._stream = None
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> RuntimeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _ClientTransport:
    """The analytics' :class:`~miniport.runtime.transport.AnalyticsTransport`: the client's
    own calls (its session, base URL and token)."""

    def __init__(self, client: RuntimeClient) -> None:
        self._client = client

    async def get_config(self) -> dict[str, Any]:
        client = self._client
        return await client._call("GET", client._url("/analytics/config"), "getAnalyticsConfig")

    async def send_events(self, body: dict[str, Any]) -> dict[str, Any]:
        client = self._client
        data = json.dumps(body, ensure_ascii=False).encode()  # not 6 bytes a Chinese character
        return await client._call(
            "POST", client._url("/analytics/events"), "reportAnalytics", data=data,
            headers={**client._headers, "Content-Type": "application/json"},
        )  # fmt: skip


async def _json_object(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """An error answer's JSON object (``{"error", "message"}``), or {} when it is not one."""
    try:
        body = json.loads(await resp.read())
    except (ValueError, aiohttp.ClientError):
        return {}
    return body if isinstance(body, dict) else {}


async def _call_listener(listener: Listener, value: dict[str, Any]) -> None:
    try:
        outcome = listener(value)
        if asyncio.iscoroutine(outcome):
            await outcome
    except Exception:
        log.exception("a runtime listener failed")


__all__ = ["RuntimeAPIError", "RuntimeClient"]
