"""The single table's key schema and item key builders: one place names every item type.

Table: partition key `PK` (S), sort key `SK` (S); one global secondary index `GSI1` on `GSI1PK`/`GSI1SK`;
TTL attribute `expires_at` (epoch seconds). Items:

    PK                          SK                        what
    PROPERTY                    PROPERTY#<property_id>    a bookable property
    PROPERTY#<property_id>      NIGHT#<yyyy-mm-dd>        a night lock: that night is held by `reservation_id`
    GUEST#<sub>                 RES#<reservation_id>      a reservation, owned by the Cognito `sub` in its key;
                                                          GSI1PK=GUEST#<sub>, GSI1SK=RES#<created-iso>#<id>
                                                          lists a guest's reservations newest first
    GUEST#<sub>                 REQUEST#<request_id>      a booking request id already used by that guest, and
                                                          the `reservation_id` it booked (idempotency)
    REVOKED                     <revoked_at_ms>#<family>  a signed-out token family (TTL: its tokens' expiry)
    LOGIN#<login_key>           LOGIN                     a login handle (login id or chat session id): which
                                                          email's login it opened (email digest, nonce); TTL
    LOGINEMAIL#<email_digest>   LOGINEMAIL                the latest login for one email: Cognito session,
                                                          nonce, attempts used (and the ids of attempts given
                                                          back), sent time, code expiry; TTL
    REFRESH#<hmac>              REFRESH                   a refresh token the gateway delivered, by its keyed digest
                                                          (HMAC-SHA-256, never the token): owner sub and token
                                                          family (origin_jti); TTL: the refresh token lifetime
    SECRET#<name>               SECRET                    a key the replicas share (the refresh-token digest key)
    RATE#<limit>#<digest>       RATE                      a rate-limit window: hits, window start; TTL
    BUDGET#<budget>#<digest>    WINDOW#<index>            an amount (model tokens) spent in one fixed window of
                                                          a budget (index = epoch seconds // window); TTL
    GUEST#<sub>                 PROFILE                   a guest profile: guest_id, email, name, created time
    GUESTID#<guest_id>          GUESTID                   reserves a guest id for one sub (ids are unique)
    CHAT#<session_id>           SESSION                   a chat session: owner sub, next event sequence number,
                                                          turn count, the agent model's notes, the turn lease
                                                          (TTL: 24 h after its last turn; 1 h while
                                                          nobody has signed into it)
    CHAT#<session_id>           TURN#<number:08d>         one turn of a chat session: what was said, tool calls
                                                          and results, stop reason (TTL: as its session)
    CHAT#<session_id>           EVENTS#<last:012d>        a batch of kept events of a keep_running turn, keyed by
                                                          its last sequence (TTL: as its session)
    CHAT#<session_id>           SEALED#<seq:012d>         a kept TokenDelivery, sealed with a key derived from the
                                                          turn's resume token (TTL: 10 minutes)
    CHAT#<session_id>           APPROVAL#<approval_id>    an action held for the owner's approval: owner sub, the
                                                          held tool call (name, arguments), the gateway's summary,
                                                          state (PENDING, APPROVED, DECLINED, WITHDRAWN), decide-by
                                                          time (TTL: as its session)

Digests are SHA-256 hex of the lower-cased email or the rate-limit subject, so addresses stay out of keys.

A booking writes the reservation, its idempotency item and one night lock per night in one TransactWriteItems,
each with `attribute_not_exists`; a cancellation marks the reservation cancelled and deletes its locks in one
transaction. See docs/reservations.md.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

PK = "PK"
SK = "SK"
GSI1 = "GSI1"
GSI1PK = "GSI1PK"
GSI1SK = "GSI1SK"
TTL_ATTRIBUTE = "expires_at"

PROPERTY_PARTITION = "PROPERTY"
PROPERTY_PREFIX = "PROPERTY#"
NIGHT_PREFIX = "NIGHT#"
GUEST_PREFIX = "GUEST#"
RESERVATION_PREFIX = "RES#"
REQUEST_PREFIX = "REQUEST#"
REVOCATION_PARTITION = "REVOKED"
CHAT_SESSION_SORT = "SESSION"
CHAT_TURN_PREFIX = "TURN#"
CHAT_APPROVAL_PREFIX = "APPROVAL#"


def property_key(property_id: str) -> dict[str, Any]:
    """Key of a property item."""
    return {PK: {"S": PROPERTY_PARTITION}, SK: {"S": f"{PROPERTY_PREFIX}{property_id}"}}


def night_partition(property_id: str) -> str:
    """PK of a property's night locks."""
    return f"{PROPERTY_PREFIX}{property_id}"


def night_sort_key(night: datetime.date) -> str:
    """SK of the lock of the night starting on `night`; sorts by date."""
    return f"{NIGHT_PREFIX}{night.isoformat()}"


def night_key(property_id: str, night: datetime.date) -> dict[str, Any]:
    """Key of a night lock item."""
    return {PK: {"S": night_partition(property_id)}, SK: {"S": night_sort_key(night)}}


def guest_partition(sub: str) -> str:
    """PK (and GSI1PK) of everything a guest owns, keyed by their Cognito `sub`."""
    return f"{GUEST_PREFIX}{sub}"


def reservation_key(sub: str, reservation_id: str) -> dict[str, Any]:
    """Key of a reservation item: only its owner's `sub` finds it."""
    return {PK: {"S": guest_partition(sub)}, SK: {"S": f"{RESERVATION_PREFIX}{reservation_id}"}}


def reservation_index_keys(sub: str, created_at: datetime.datetime, reservation_id: str) -> dict[str, Any]:
    """GSI1 attributes of a reservation item: the guest's reservations sort by creation time (UTC, microseconds)."""
    created = created_at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        GSI1PK: {"S": guest_partition(sub)},
        GSI1SK: {"S": f"{RESERVATION_PREFIX}{created}#{reservation_id}"},
    }


def request_key(sub: str, request_id: str) -> dict[str, Any]:
    """Key of the idempotency item of a guest's booking request id."""
    return {PK: {"S": guest_partition(sub)}, SK: {"S": f"{REQUEST_PREFIX}{request_id}"}}


def digest(text: str) -> str:
    """SHA-256 hex of `text`: how emails and rate-limit subjects appear in keys."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def email_digest(email: str) -> str:
    """The digest of an email address, case-insensitively (Cognito pools here ignore case)."""
    return digest(email.lower())


def login_key(key: str) -> dict[str, Any]:
    """Key of a login handle item."""
    return {PK: {"S": f"LOGIN#{key}"}, SK: {"S": "LOGIN"}}


def login_email_key(email_hash: str) -> dict[str, Any]:
    """Key of the latest-login item of one email (by its digest)."""
    return {PK: {"S": f"LOGINEMAIL#{email_hash}"}, SK: {"S": "LOGINEMAIL"}}


def refresh_token_key(token_digest: str) -> dict[str, Any]:
    """Key of the item recognising one delivered refresh token (by its keyed digest)."""
    return {PK: {"S": f"REFRESH#{token_digest}"}, SK: {"S": "REFRESH"}}


def secret_key(name: str) -> dict[str, Any]:
    """Key of a secret the replicas share, created once by whichever replica needs it first."""
    return {PK: {"S": f"SECRET#{name}"}, SK: {"S": "SECRET"}}


def rate_key(limit_name: str, subject: str) -> dict[str, Any]:
    """Key of the rate-limit window of `subject` under the limit named `limit_name`."""
    return {PK: {"S": f"RATE#{limit_name}#{digest(subject)}"}, SK: {"S": "RATE"}}


def budget_key(budget_name: str, subject: str, window_index: int) -> dict[str, Any]:
    """Key of what `subject` spent of the budget named `budget_name` in its fixed window `window_index`."""
    return {PK: {"S": f"BUDGET#{budget_name}#{digest(subject)}"}, SK: {"S": f"WINDOW#{window_index}"}}


def guest_key(sub: str) -> dict[str, Any]:
    """Key of a guest profile."""
    return {PK: {"S": guest_partition(sub)}, SK: {"S": "PROFILE"}}


def guest_id_key(guest_id: str) -> dict[str, Any]:
    """Key of the item reserving a guest id."""
    return {PK: {"S": f"GUESTID#{guest_id}"}, SK: {"S": "GUESTID"}}


def revocation_sort_floor(epoch_seconds: float) -> str:
    """The smallest revocation sort key recorded at or after `epoch_seconds` (zero-padded milliseconds)."""
    return f"{max(int(epoch_seconds * 1000), 0):015d}"


def revocation_key(token_family: str, revoked_at: float) -> dict[str, Any]:
    """Key of a revocation item: one partition, sorted by time, so "what is new since T" is one query."""
    return {PK: {"S": REVOCATION_PARTITION}, SK: {"S": f"{revocation_sort_floor(revoked_at)}#{token_family}"}}


def chat_partition(session_id: str) -> str:
    """The partition holding a chat session and its turns."""
    return f"CHAT#{session_id}"


def chat_session_key(session_id: str) -> dict[str, Any]:
    """Key of a chat session item."""
    return {PK: {"S": chat_partition(session_id)}, SK: {"S": CHAT_SESSION_SORT}}


def chat_turn_sort(number: int) -> str:
    """Sort key of a chat turn item: zero-padded so turns sort in order."""
    return f"{CHAT_TURN_PREFIX}{number:08d}"


def chat_turn_key(session_id: str, number: int) -> dict[str, Any]:
    """Key of one turn of a chat session."""
    return {PK: {"S": chat_partition(session_id)}, SK: {"S": chat_turn_sort(number)}}


CHAT_EVENTS_PREFIX = "EVENTS#"
CHAT_SEALED_PREFIX = "SEALED#"


def chat_events_sort(last_sequence: int) -> str:
    """Sort key of a batch of kept chat events, by its last sequence (zero-padded: batches sort in order)."""
    return f"{CHAT_EVENTS_PREFIX}{last_sequence:012d}"


def chat_sealed_sort(sequence: int) -> str:
    """Sort key of a sealed TokenDelivery kept for replay."""
    return f"{CHAT_SEALED_PREFIX}{sequence:012d}"


def chat_approval_key(session_id: str, approval_id: str) -> dict[str, Any]:
    """Key of an action held for approval in a chat session."""
    return {PK: {"S": chat_partition(session_id)}, SK: {"S": f"{CHAT_APPROVAL_PREFIX}{approval_id}"}}
