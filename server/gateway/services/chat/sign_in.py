"""Signing in inside a chat: what the gateway does once the login service has exchanged a code for tokens.

The `verify_code` tool calls `ChatSignIn.complete` with the chat session and the turn's emitter. The gateway,
not the model, then checks the new access token, binds the session to the person, and writes the tokens onto
the stream as a `TokenDeliveryEvent`. Only the principal comes back to the tool; the tokens go nowhere else
(not into a result, the stored conversation or a log).
"""

from __future__ import annotations

from dataclasses import replace

from gateway.domain import Principal, Sub, TokenDelivery
from gateway.errors import UpstreamUnavailableError
from gateway.ports import BearerVerifier, ChatSessionStore
from gateway.services.chat.events import Emit, TokenDeliveryEvent


class ChatSignIn:
    """Completes an in-chat sign-in: verify the new access token, bind the session, deliver the tokens."""

    def __init__(self, store: ChatSessionStore, verifier: BearerVerifier) -> None:
        self._store = store
        self._verifier = verifier

    async def complete(self, session_id: str, delivery: TokenDelivery, emit: Emit) -> Principal:
        """The person who signed in, as the principal the turn's tools run as from now on.

        Raises `UpstreamUnavailableError` when the tokens are not the person the login service named (nothing is
        bound or delivered then), `SessionNotOwnedError` when the session is bound to somebody else, and the
        verifier's errors for a token it refuses. The tokens are emitted only once the session is bound.
        """
        principal = await self._verifier.verify(delivery.access_token)
        if principal.sub != delivery.sub:
            raise UpstreamUnavailableError("the sign-in could not be completed; try again")
        # No guest id when the login service could not store a new person's profile (the next sign-in makes it).
        guest_id = delivery.guest_id or None
        await self._store.bind_owner(session_id, sub=Sub(principal.sub), guest_id=guest_id)
        emit(TokenDeliveryEvent(delivery))
        return replace(principal, guest_id=guest_id, email=delivery.email)
