"""Open runtime event streams end when the token that opened them stops being valid.

A runtime token is checked when its event stream opens (``web.runtime_api.open_events``); the
stream then stays open for as long as its client keeps it. So a stream is ended when its token
is:

- revoked: a node learns of a revocation when it reads the revocations
  (``AuthService.refresh_revocations``: at a runtime's request, at most once a second, or when
  told to) and then ends its own streams of the tokens the revocation refuses. The node that
  revokes tells every node so on the broker's :data:`REVOKED_CHANNEL` (through Redis: all of
  them, at once). The word carries no authority: it only makes each node read the revocations
  from the database now (a forged one costs a read), so what a node refuses and what it ends
  are the same. A word lost (Redis away at that moment, the CLI revoking without Redis) delays
  the end until the node's next read: the next sweep at the latest.
- expired: a sweep every ``SWEEP_S`` (the keep-alive period) ends the streams of tokens
  older than ``RUNTIME_TOKEN_MAX_AGE_S`` and reads the revocations.

The word and the sweep are ``services.node_watch``'s, shared with the console streams' guard.

A stream ended so is told why first: an ``unauthorized`` message with the error body a request
with that token now gets (its client reconnects and is refused with 401).

Cost: a stream keeps its token's issue time, nothing more (no task or timer of its own); a
revocation looks at its user's streams only; the sweep, one task per node while runtime streams
are open, compares each stream's issue time once per ``SWEEP_S``."""

from __future__ import annotations

import logging

from ..clock import Clock
from ..errors import Unauthorized
from ..events.broker import Broker, Message
from .auth import RUNTIME_TOKEN_MAX_AGE_S, AuthService
from .node_watch import NodeWatch

log = logging.getLogger(__name__)

# a broker key no runtime can have (a user id never holds a control character: validate_id)
REVOKED_CHANNEL = "\x00runtime-tokens:revoked"


def notice(reason: str) -> Message:
    """A stream's last message when its token stopped being valid ("runtime token revoked")."""
    return {"type": "unauthorized", **Unauthorized(reason).as_dict()}


class StreamGuard(NodeWatch):
    word = "revoked"

    def __init__(self, auth: AuthService, broker: Broker, clock: Clock) -> None:
        super().__init__(broker, REVOKED_CHANNEL)
        self.auth, self.clock = auth, clock
        auth.on_revoked(self._revoked)
        auth.announce = self.announce

    def watch(self) -> None:
        """A runtime stream opened on this node: the sweep runs (until none is open)."""
        self.start_sweeping()

    def watching(self) -> bool:
        return bool(self.broker.open_connections())

    async def recheck(self) -> None:
        """Read the revocations now (whenever they were last read): ``auth`` tells
        ``_revoked`` of each new one."""
        try:
            await self.auth.refresh_revocations(force=True)
        except Exception as exc:  # the database away for a moment: the next sweep reads
            log.warning("could not read the runtime token revocations: %r", exc)

    async def sweep(self) -> int:
        """Read the revocations and end the streams of expired tokens; how many expired."""
        await self.recheck()
        before = self.clock.now() - RUNTIME_TOKEN_MAX_AGE_S
        ended = self.broker.end_expired(before, notice("runtime token expired"))
        if ended:
            log.info("ended %d event streams whose runtime token expired", ended)
        return ended

    def _revoked(self, user_id: str, before: float) -> None:
        ended = self.broker.end_streams(user_id, before, notice("runtime token revoked"))
        if ended:
            log.info("ended %d event streams of %s: runtime tokens revoked", ended, user_id)

    async def announce(self, user_id: str, before: float) -> None:
        """Tell every node (this one too) that ``user_id``'s tokens were revoked."""
        await self.say({"type": self.word, "user_id": user_id, "before": before})
