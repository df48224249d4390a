"""Partner API keys: a request budget per key, and when each key was last used.

**Budget.** Every request authenticated by an API key takes a token from that
key's bucket: `api_key_burst` tokens at most, refilled at `api_key_rate` a
second (SOLEWATCH_API_KEY_BURST, SOLEWATCH_API_KEY_RATE). An empty bucket
answers 429 with `Retry-After`, before the route runs, and a refused request
costs nothing. The bucket lives in the cache (shared/cache/bucket.py), taken in
one atomic step: Redis in the distributed mode, so spreading requests over API
processes gains nothing; memory in the all-in-one mode's single process (a
restart gives every key a full bucket, which is no more than one burst). Users
signed in with a bearer token are not counted: the budget is the partner's.

Each answer to a key says where it stands, as the IETF draft
"RateLimit header fields for HTTP" names it:

    RateLimit-Limit       the burst: requests the key may make at once
    RateLimit-Remaining   requests it may make right now
    RateLimit-Reset       seconds until the bucket is full again

**Last use.** A key's `last_used_at` is written to the store at most once per
LAST_USED_EVERY_S per key, whichever process sees the request: the first one
in that span claims it in the cache, so a busy key costs no store write per request.
"""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import HTTPException, Request, status
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.context import ServiceContext
from shared.cache import Allowance
from shared.logging import get_logger
from shared.store import StoreUnavailable

log = get_logger("solewatch.authn")

BUCKET_PREFIX = "api-key-bucket:"
LAST_USED_PREFIX = "api-key-used:"
LAST_USED_EVERY_S = 60.0
# Where a request's RateLimit-* headers wait for its answer (Starlette's request state, in the ASGI scope).
STATE_FIELD = "api_key_rate_limit"

refused = Counter("api_key_requests_limited_total", "Requests made with an API key refused with 429 (empty bucket)")

API_KEY_LIMITED: dict[str, Any] = {
    "description": "this API key made more requests than its budget allows; retry after `Retry-After` seconds",
    "headers": {
        "Retry-After": {
            "description": "seconds until the key may make a request again",
            "schema": {"type": "integer", "minimum": 1},
        },
        "RateLimit-Limit": {
            "description": "requests the key may make at once (its burst)",
            "schema": {"type": "integer", "minimum": 1},
        },
        "RateLimit-Remaining": {
            "description": "requests the key may make right now",
            "schema": {"type": "integer", "minimum": 0},
        },
        "RateLimit-Reset": {
            "description": "seconds until the key's whole burst is available again",
            "schema": {"type": "integer", "minimum": 0},
        },
    },
}


def limit_headers(burst: int, allowance: Allowance) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(burst),
        "RateLimit-Remaining": str(allowance.remaining),
        "RateLimit-Reset": str(math.ceil(allowance.full_after)),
    }


async def spend_request(ctx: ServiceContext, request: Request, key_id: int) -> None:
    """Count one request against the key's budget; HTTPException 429 when it has none left."""
    burst = ctx.settings.api_key_burst
    allowance = await ctx.cache.take_token(f"{BUCKET_PREFIX}{key_id}", rate=ctx.settings.api_key_rate, burst=burst)
    headers = limit_headers(burst, allowance)
    setattr(request.state, STATE_FIELD, headers)  # for RateLimitHeaders, whatever the route answers
    if not allowance.allowed:
        refused.inc()
        retry_after = max(1, math.ceil(allowance.retry_after))
        log.info("api_key_rate_limited", api_key_id=key_id, retry_after=retry_after)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many requests for this API key; retry later",
            headers={**headers, "Retry-After": str(retry_after)},
        )


async def note_use(ctx: ServiceContext, key_id: int) -> None:
    """Record that the key was used now, unless a process did within the last LAST_USED_EVERY_S."""
    if not await ctx.cache.set_if_absent(f"{LAST_USED_PREFIX}{key_id}", b"1", ttl=LAST_USED_EVERY_S):
        return
    try:
        await ctx.store.record_api_key_use(key_id, time.time())
    except StoreUnavailable as exc:
        # The request itself may not need the store; a last use a minute late is no reason to refuse it.
        log.warning("api_key_use_not_recorded", api_key_id=key_id, error=str(exc))


class RateLimitHeaders:
    """Add a key's RateLimit-* headers to the answer of its request, whichever route gave it.

    The principal dependency leaves them in the request's state; routes that
    build their own Response (204s, CSV, zip) would otherwise drop what a
    dependency sets on the default one.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_limits(message: Message) -> None:
            headers = state.get(STATE_FIELD)
            if message["type"] == "http.response.start" and headers:
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (k.lower().encode(), v.encode()) for k, v in headers.items() if k.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_limits)
