"""Passwords: accepting an invitation, changing one's password, resetting a forgotten one (CONTRACT §5).

The anonymous routes (accept, reset request, reset confirm) are throttled per
client address like logins (services/authn/ratelimit.py), each in its own
namespace. A reset request answers 202 with the same body at once whether or
not the email has an account, and does the looking up and mailing afterwards,
off the request: neither the answer nor its timing tells who has an account.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status

from services.authn import account_mail
from services.authn.account_mail import LinkToken, hash_link_token
from services.authn.deps import ContextDep, Principal, require_user
from services.authn.models import (
    Accepted,
    AcceptInvite,
    ErrorOut,
    PasswordChange,
    PasswordResetConfirm,
    PasswordResetRequest,
    TokenResponse,
)
from services.authn.passwords import hash_password, verify_password
from services.authn.ratelimit import LoginAttempt, LoginRateLimiter, RateLimited
from services.authn.routes import THROTTLED, client_address, error_responses, token_response
from services.authn.tokens import revoke_user_sessions, start_session
from services.context import ServiceContext
from shared.logging import get_logger
from shared.store.accounts import TokenPurpose, User
from shared.store.audit import Actor, AuditEntry

log = get_logger("solewatch.authn")

router = APIRouter(prefix="/api/v1", tags=["auth"])

BAD_LINK = "this link is unknown, already used or expired"
RESET_ACCEPTED = "if an account has this email, a link to reset its password is on its way"


async def _begin(
    ctx: ServiceContext, namespace: str, account: str, address: str
) -> tuple[LoginRateLimiter, LoginAttempt]:
    limiter = LoginRateLimiter.from_settings(ctx.settings, ctx.cache, namespace=namespace)
    try:
        return limiter, await limiter.begin(account=account, address=address)
    except RateLimited as exc:
        log.warning("account_route_rate_limited", route=namespace, address=address, retry_after=exc.retry_after)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many attempts; try again later",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None


async def _redeem(
    ctx: ServiceContext, request: Request, purpose: TokenPurpose, token: str, password: str, action: str
) -> User:
    """Spend a link's token and set the password; 400 when the token is not valid (any more)."""
    address = client_address(request)
    limiter, attempt = await _begin(ctx, f"{purpose}-", f"{purpose}-link", address)
    token_hash, now = hash_link_token(token), time.time()
    user = await ctx.store.user_by_token(purpose, token_hash, now)
    redeemed = False
    if user is not None:
        audit = AuditEntry(user.tenant_id, Actor("user", str(user.id), user.email), action, "user", str(user.id))
        password_hash = await hash_password(password)
        redeemed = await ctx.store.redeem_user_token(user.id, purpose, token_hash, now, password_hash, audit=audit)
    if user is None or not redeemed:
        await limiter.failed(attempt)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, BAD_LINK)
    await limiter.succeeded(attempt)
    return user


@router.post(
    "/auth/accept-invite",
    summary="Accept an invitation: choose a password, get a session",
    responses={**error_responses(400), **THROTTLED},
)
async def accept_invite(body: AcceptInvite, request: Request, response: Response, ctx: ContextDep) -> TokenResponse:
    """The token comes from the invitation link; it works once. The user becomes active and is signed in."""
    user = await _redeem(ctx, request, "invite", body.token, body.password, "user.invite_accept")
    await ctx.store.record_login(user.id, time.time())  # recorded by the acceptance's own entry
    log.info("invitation_accepted", user_id=user.id, tenant_id=user.tenant_id)
    active = await ctx.store.user(user.id)
    assert active is not None, "users are never deleted"
    return token_response(await start_session(ctx.settings, ctx.cache, active), response)


@router.post(
    "/auth/password",
    summary="Change your password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **error_responses(401, 403),
        400: {"model": ErrorOut, "description": "the current password is not right"},
        **THROTTLED,
    },
)
async def change_password(
    body: PasswordChange,
    request: Request,
    principal: Annotated[Principal, Depends(require_user)],
    ctx: ContextDep,
) -> Response:
    """Your other sessions end (signed out everywhere else); this one goes on."""
    assert principal.user_id is not None and principal.session_id is not None  # a signed-in user
    user = await ctx.store.user(principal.user_id)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the account no longer exists")
    # Throttled like a login: a stolen access token must not become a password oracle.
    limiter, attempt = await _begin(ctx, "password-", user.email, client_address(request))
    if not (await verify_password(user.password_hash, body.current_password)).ok:
        await limiter.failed(attempt)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the current password is not right")
    await limiter.succeeded(attempt)
    audit = principal.audit("user.password_change", "user", user.id)
    await ctx.store.set_password_hash(user.id, await hash_password(body.new_password), audit=audit)
    await revoke_user_sessions(ctx.settings, ctx.cache, user.id, keep_session=principal.session_id)
    log.info("password_changed", user_id=user.id, tenant_id=user.tenant_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/password-reset",
    summary="Ask for a password reset link",
    status_code=status.HTTP_202_ACCEPTED,
    responses=THROTTLED,
)
async def request_password_reset(body: PasswordResetRequest, request: Request, ctx: ContextDep) -> Accepted:
    """Always the same answer, whether or not the email has an account; if it has (and is active),
    an email with a single-use link, valid 1 hour, follows. A new request replaces the previous link."""
    address = client_address(request)
    limiter, attempt = await _begin(ctx, "reset-request-", body.email, address)
    # Every request counts as a failure: past a few, the same email from the same address waits.
    await limiter.failed(attempt)
    _in_background(request, _send_reset_link(ctx, body.email, address))
    return Accepted(detail=RESET_ACCEPTED)


@router.post(
    "/auth/password-reset/confirm",
    summary="Set a new password from a reset link",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**error_responses(400), **THROTTLED},
)
async def confirm_password_reset(body: PasswordResetConfirm, request: Request, ctx: ContextDep) -> Response:
    """The token comes from the reset link; it works once. Every session of the user ends: sign in again."""
    user = await _redeem(ctx, request, "reset", body.token, body.password, "user.password_reset")
    await revoke_user_sessions(ctx.settings, ctx.cache, user.id)
    log.info("password_reset", user_id=user.id, tenant_id=user.tenant_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _send_reset_link(ctx: ServiceContext, email: str, address: str) -> None:
    user = await ctx.store.user_by_email(email)
    if user is None or user.status != "active":
        return
    reset = LinkToken.new("reset")
    audit = AuditEntry(
        user.tenant_id,
        Actor.system(f"reset request from {address}"),
        "user.password_reset_request",
        "user",
        str(user.id),
        {"address": address},
    )
    if not await ctx.store.set_user_token(user.id, "reset", reset.stored, audit=audit):
        return  # disabled meanwhile
    await account_mail.send(
        ctx.settings,
        to=user.email,
        subject="[solewatch] Reset your password",
        text=account_mail.reset_text(url=account_mail.link(ctx.settings, "reset", reset.token)),
    )


def background_tasks(request: Request) -> set[asyncio.Task[None]]:
    """The account emails this app is still sending (kept referenced so they finish; tests wait on them)."""
    state = request.app.state
    if not hasattr(state, "account_mail_tasks"):
        state.account_mail_tasks = set()
    tasks: set[asyncio.Task[None]] = state.account_mail_tasks
    return tasks


def _in_background(request: Request, work: Coroutine[Any, Any, None]) -> None:
    tasks = background_tasks(request)

    async def run() -> None:
        try:
            await work
        except Exception:  # nobody waits for this answer: the log is where a failure shows
            log.exception("password_reset_mail_failed")

    task = asyncio.create_task(run(), name="password-reset-mail")
    tasks.add(task)
    task.add_done_callback(tasks.discard)
