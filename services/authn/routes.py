"""The authn HTTP API: tokens, the caller, tenants (platform admins), API keys (tenant admins)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from services.authn.apikeys import PREFIX_LENGTH, hash_api_key, new_api_key
from services.authn.bootstrap import InvalidAccount, add_tenant
from services.authn.deps import (
    AdminPrincipal,
    ContextDep,
    CurrentPrincipal,
    PlatformAdminPrincipal,
    Principal,
    require_user,
)
from services.authn.models import (
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyOut,
    ApiKeyRequest,
    ErrorOut,
    MeOut,
    RefreshRequest,
    TenantCreated,
    TenantList,
    TenantOut,
    TenantRef,
    TenantRequest,
    TokenRequest,
    TokenResponse,
    UserOut,
    utc,
)
from services.authn.passwords import verify_password
from services.authn.ratelimit import LoginRateLimiter, RateLimited
from services.authn.tokens import (
    InvalidToken,
    TokenPair,
    refresh_session,
    revoke_session,
    start_session,
)
from shared.logging import get_logger
from shared.store.accounts import TenantExists, User, UserExists
from shared.store.audit import Actor, AuditEntry

log = get_logger("solewatch.authn")

router = APIRouter(prefix="/api/v1")

BAD_CREDENTIALS = "incorrect email or password"


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


def token_response(pair: TokenPair, response: Response) -> TokenResponse:
    response.headers["Cache-Control"] = "no-store"  # RFC 6749 5.1: no cache keeps tokens
    return TokenResponse(access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token)


def client_address(request: Request) -> str:
    # The peer uvicorn reports; behind a reverse proxy, run uvicorn with
    # proxy headers trusted from that proxy so this is the real client.
    return request.client.host if request.client else "unknown"


THROTTLED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorOut,
        "description": "Too many failed logins from this address; retry later",
        "headers": {
            "Retry-After": {
                "description": "seconds to wait before trying again",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    }
}


@router.post(
    "/auth/token",
    tags=["auth"],
    summary="Log in with email and password",
    responses={**error_responses(401), **THROTTLED},
)
async def issue_token(body: TokenRequest, request: Request, response: Response, ctx: ContextDep) -> TokenResponse:
    """A new session: an access token and a refresh token.

    Failed logins slow down the address they come from, never the account
    everywhere: after a few failures of one email from one address, that
    email waits a delay doubling with each further failure before it may be
    tried again from there, and an address failing on many emails is refused
    for a while. Meanwhile the answer is 429 with `Retry-After`, whatever the
    password. The right password from another address still works.
    """
    limiter = LoginRateLimiter.from_settings(ctx.settings, ctx.cache)
    address = client_address(request)
    try:
        attempt = await limiter.begin(account=body.email, address=address)
    except RateLimited as exc:
        log.warning("login_rate_limited", address=address, reason=exc.reason, retry_after=exc.retry_after)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed logins; try again later",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    try:
        user = await ctx.store.user_by_email(body.email)
        # Only an active user signs in. An unknown email, an invited or a disabled user cost the
        # same argon2 work as a wrong password and get the same answer: no oracle, by status or timing.
        active = user if user is not None and user.status == "active" else None
        check = await verify_password(active.password_hash if active else None, body.password)
    except BaseException:
        await limiter.abandoned(attempt)  # storage down, or the client left: the next try need not wait
        raise
    if active is None or not check.ok:
        await limiter.failed(attempt)
        log.info("login_failed", address=address)
        if user is not None:  # an unknown email has no tenant to log under
            await ctx.store.record_audit(_login_entry(user, "auth.login_failed", address, status=user.status))
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, BAD_CREDENTIALS)
    await limiter.succeeded(attempt)
    if check.new_hash is not None:
        await ctx.store.set_password_hash(active.id, check.new_hash)
    now = time.time()
    await ctx.store.record_login(active.id, now, audit=_login_entry(active, "auth.login", address))
    log.info("login_succeeded", user_id=active.id, tenant_id=active.tenant_id, address=address)
    return token_response(await start_session(ctx.settings, ctx.cache, active), response)


def _login_entry(user: User, action: str, address: str, **detail: Any) -> AuditEntry:
    # A failed login is not the user's doing: whoever tried is only an address.
    actor = Actor("user", str(user.id), user.email) if action == "auth.login" else Actor.system(f"login from {address}")
    return AuditEntry(user.tenant_id, actor, action, "user", str(user.id), {"address": address, **detail})


@router.post(
    "/auth/refresh", tags=["auth"], summary="Trade a refresh token for a new pair", responses=error_responses(401)
)
async def refresh_token(body: RefreshRequest, response: Response, ctx: ContextDep) -> TokenResponse:
    """Each refresh token works once. Showing a spent one again ends its whole session."""
    try:
        pair = await refresh_session(ctx.settings, ctx.cache, ctx.store, body.refresh_token)
    except InvalidToken as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
    return token_response(pair, response)


@router.post(
    "/auth/logout",
    tags=["auth"],
    summary="End the session",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403),
)
async def logout(principal: Annotated[Principal, Depends(require_user)], ctx: ContextDep) -> Response:
    """Revokes the session's access tokens at once, and its refresh token."""
    assert principal.session_id is not None  # every access token has one
    await revoke_session(ctx.settings, ctx.cache, principal.session_id)
    log.info("logout", user_id=principal.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/auth/me", tags=["auth"], summary="Who is calling", responses=error_responses(401))
async def me(principal: CurrentPrincipal, ctx: ContextDep) -> MeOut:
    tenant = await ctx.store.tenant(principal.tenant_id)
    return MeOut(
        via=principal.via,
        email=principal.email,
        role=principal.role,
        platform_admin=principal.platform_admin,
        user_id=principal.user_id,
        api_key_id=principal.api_key_id,
        tenant=TenantRef(id=principal.tenant_id, name=tenant.name if tenant else ""),
    )


# -- tenants (platform admins) -------------------------------------------------------------


@router.post(
    "/tenants",
    tags=["tenants"],
    summary="Create a tenant and its admin",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 409),
)
async def create_tenant(body: TenantRequest, principal: PlatformAdminPrincipal, ctx: ContextDep) -> TenantCreated:
    """Platform admins only. The new admin logs in with the email and password given."""
    try:
        created = await add_tenant(
            ctx.store,
            name=body.name,
            admin_email=body.admin_email,
            admin_password=body.admin_password,
            actor=principal.audit_actor,
        )
    except TenantExists:
        raise HTTPException(status.HTTP_409_CONFLICT, "a tenant with that name exists") from None
    except UserExists:
        raise HTTPException(status.HTTP_409_CONFLICT, "a user with that email exists") from None
    except InvalidAccount as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    tenant = created["tenant"]
    log.info("tenant_created_by", tenant_id=tenant["id"], by=principal.actor)
    return TenantCreated(
        tenant=TenantOut(id=tenant["id"], name=tenant["name"], created_at=utc(tenant["created_at"])),
        admin=UserOut(**created["admin"]),
    )


@router.get("/tenants", tags=["tenants"], summary="List tenants", responses=error_responses(401, 403))
async def list_tenants(principal: PlatformAdminPrincipal, ctx: ContextDep) -> TenantList:
    """Platform admins only."""
    return TenantList(items=[TenantOut.of(tenant) for tenant in await ctx.store.tenants()])


# -- API keys (tenant admins) -----------------------------------------------------------------


async def _key_manager(principal: AdminPrincipal) -> Principal:
    # A signed-in admin, never an API key: a leaked key must not mint or keep itself alive.
    return await require_user(principal)


KeyManager = Annotated[Principal, Depends(_key_manager)]


@router.post(
    "/api-keys",
    tags=["api-keys"],
    summary="Create an API key",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403),
)
async def create_api_key(body: ApiKeyRequest, principal: KeyManager, ctx: ContextDep) -> ApiKeyCreated:
    """For a partner integration of your tenant. The key is in this answer only: keep it."""
    key = new_api_key()
    record = await ctx.store.create_api_key(
        tenant_id=principal.tenant_id,
        name=body.name,
        prefix=key[:PREFIX_LENGTH],
        key_hash=hash_api_key(key),
        role=body.role,
        audit=principal.audit("api_key.create", "api_key", name=body.name, role=body.role),
    )
    log.info("api_key_created", api_key_id=record.id, tenant_id=record.tenant_id, by=principal.actor)
    return ApiKeyCreated(**ApiKeyOut.of(record).model_dump(), key=key)


MAX_KEYS_PAGE = 1000
_KEY_CURSOR = r"^[0-9]{1,18}$"  # the last id of the previous page


@router.get("/api-keys", tags=["api-keys"], summary="List API keys", responses=error_responses(401, 403))
async def list_api_keys(
    principal: KeyManager,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=MAX_KEYS_PAGE, description="items per page")] = 100,
    cursor: Annotated[str | None, Query(pattern=_KEY_CURSOR, description="`next_cursor` of the previous page")] = None,
) -> ApiKeyList:
    """Your tenant's keys, oldest first, revoked ones included, each with when it was last used
    (to within a minute); never the keys themselves."""
    keys = await ctx.store.api_keys(principal.tenant_id, after_id=int(cursor) if cursor else None, limit=limit + 1)
    page = keys[:limit]
    return ApiKeyList(
        items=[ApiKeyOut.of(key) for key in page], next_cursor=str(page[-1].id) if len(keys) > limit else None
    )


@router.delete(
    "/api-keys/{key_id}",
    tags=["api-keys"],
    summary="Revoke an API key",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404),
)
async def revoke_api_key(key_id: int, principal: KeyManager, ctx: ContextDep) -> Response:
    """The key stops working at once."""
    audit = principal.audit("api_key.revoke", "api_key", key_id)
    if not await ctx.store.revoke_api_key(principal.tenant_id, key_id, audit=audit):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such API key")
    log.info("api_key_revoked", api_key_id=key_id, tenant_id=principal.tenant_id, by=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
