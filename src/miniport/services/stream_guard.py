"""Open runtime event streams end when the token that opened them is revoked.

A runtime token is checked when its event stream opens (``web.runtime_api.open_events``); the
stream then stays open for as long as its client keeps it. So a stream is ended when its token
is revoked. A node learns of a revocation when it reads the revocations
(``AuthService.refresh_revocations``: at a runtime's request, at most once a second, or when
told to) and then ends its own streams of the tokens the revocation refuses. The node that
revokes tells every node so on the broker's :data:`REVOKED_CHANNEL` (through Redis: all of
them, at once). The word carries no authority: it only makes each node read the revocations
from the database now (a forged one costs a read), so what a node refuses and what it ends are
the same. A word lost (Redis away at that moment, the CLI revoking without Redis) delays the
end until the node's next read.

A stream ended so is told why first: an ``unauthorized`` message with the error body a request
with that token now gets (its client reconnects and is refused with 401).

Cost: a stream keeps its token's issue time, nothing more (no task or timer of its own); a
revocation looks at its user's streams only."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..errors import Unauthorized
from ..events.broker import Broker, Message
from .auth import AuthService

log = logging.getLogger(__name__)

# a broker key no runtime can have (a user id never holds a control character: validate_id)
REVOKED_CHANNEL = "\x00runtime-tokens:revoked"


def notice(reason: str) -> Message:
    """A stream's last message when its token stopped being valid ("runtime token revoked")."""
    return {"type": "unauthorized", **Unauthorized(reason).as_dict()}


class StreamGuard:
    def __init__(self, auth: AuthService, broker: Broker) -> None:
        self.auth, self.broker = auth, broker
        self._reader: asyncio.Task[None] | None = None
        self._stale = False  # a node said it revoked since the reader last read
        self._control = broker.subscribe(REVOKED_CHANNEL, "node", broadcast=False)
        self._control.sink = self
        auth.on_revoked(self._revoked)
        auth.announce = self.announce

    def _revoked(self, user_id: str, before: float) -> None:
        ended = self.broker.end_streams(user_id, before, notice("runtime token revoked"))
        if ended:
            log.info("ended %d event streams of %s: runtime tokens revoked", ended, user_id)

    async def announce(self, user_id: str, before: float) -> None:
        """Tell every node (this one too) that ``user_id``'s tokens were revoked."""
        message = {"type": "revoked", "user_id": user_id, "before": before}
        await self.broker.publish(REVOKED_CHANNEL, message)

    # --- the broker's sink for REVOKED_CHANNEL: a node revoked tokens (this one too)
    def write(self, frame: bytes, message: Message) -> None:
        """Read the revocations now (several words at once: one or two reads). Runs in the
        broker's delivery: never raises."""
        if message.get("type") != "revoked":
            return
        self._stale = True
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read())

    def end(self) -> None:
        return None

    async def _read(self) -> None:
        while self._stale:
            self._stale = False
            try:
                await self.auth.refresh_revocations(force=True)
            except Exception as exc:  # read again at the next runtime's request
                log.warning("could not read the runtime token revocations: %r", exc)

    async def close(self) -> None:
        tasks = [self._reader] if self._reader is not None else []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.broker.unsubscribe(self._control)
