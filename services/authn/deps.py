"""Who is calling: FastAPI dependencies that every protected route uses.

Roles, within the caller's own tenant: a viewer reads; a supervisor also
acknowledges and resolves alerts; an admin does everything (devices, contacts,
API keys). A platform admin may also create tenants.

    async def list_devices(principal: CurrentPrincipal, ctx: ContextDep): ...
    async def ack_alert(principal: SupervisorPrincipal, ...): ...
    async def add_device(principal: AdminPrincipal, ...): ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.authn import key_limits
from services.authn.apikeys import hash_api_key, looks_like_api_key
from services.authn.tokens import AccessClaims, InvalidToken, verify_access_token
from services.context import ServiceContext
from shared.cache import Cache
from shared.config import Settings
from shared.store.accounts import AccountStore, Role
from shared.store.audit import Actor, AuditEntry


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: int
    role: Role
    via: Literal["token", "api_key"]
    user_id: int | None = None  # None for an API key
    email: str | None = None
    api_key_id: int | None = None
    platform_admin: bool = False
    session_id: str | None = None  # the refresh-token family a bearer token belongs to
    api_key_name: str | None = None

    @property
    def actor(self) -> str:
        """How this caller appears in an alert's timeline."""
        return self.email or f"api-key:{self.api_key_id}"

    @property
    def audit_actor(self) -> Actor:
        """How this caller appears in the audit log."""
        if self.via == "api_key":
            return Actor("api_key", str(self.api_key_id), self.api_key_name or f"api-key:{self.api_key_id}")
        return Actor("user", str(self.user_id), self.email or f"user:{self.user_id}")

    def audit(self, action: str, target_type: str, target_id: object = None, **detail: Any) -> AuditEntry:
        """The audit entry of a change this caller makes, for the store call that makes it
        (target_id None for a create: the store names the new id)."""
        target = None if target_id is None else str(target_id)
        return AuditEntry(self.tenant_id, self.audit_actor, action, target_type, target, detail)


def get_context(request: Request) -> ServiceContext:
    """The process's ServiceContext, set by the app factory as `app.state.context`."""
    context: ServiceContext = request.app.state.context  # Starlette's app state is untyped
    return context


ContextDep = Annotated[ServiceContext, Depends(get_context)]

_bearer = HTTPBearer(auto_error=False, bearerFormat="JWT", description="an access token from POST /api/v1/auth/token")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="a partner API key (`sw_...`)")


def _unauthorized(detail: str, *, token_given: bool) -> HTTPException:
    challenge = 'Bearer error="invalid_token"' if token_given else "Bearer"
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge})


def principal_from_claims(claims: AccessClaims) -> Principal:
    return Principal(
        tenant_id=claims.tenant_id,
        role=claims.role,
        via="token",
        user_id=claims.user_id,
        email=claims.email,
        platform_admin=claims.platform_admin,
        session_id=claims.session_id,
    )


async def authenticate_access_token(settings: Settings, cache: Cache, token: str) -> Principal:
    """The principal behind an access token (signature, expiry, session not revoked); InvalidToken otherwise.

    For callers outside FastAPI routes, such as the Socket.IO server's connect handler.
    """
    return principal_from_claims(await verify_access_token(settings, cache, token))


async def authenticate_api_key(store: AccountStore, key: str) -> Principal | None:
    """The principal behind a partner API key; None when unknown or revoked."""
    if not looks_like_api_key(key):
        return None
    record = await store.api_key_by_hash(hash_api_key(key))
    if record is None or record.revoked:
        return None
    return Principal(
        tenant_id=record.tenant_id, role=record.role, via="api_key", api_key_id=record.id, api_key_name=record.name
    )


async def current_principal(
    ctx: ContextDep,
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """Resolve `Authorization: Bearer` or `X-API-Key` to a principal; 401 otherwise.

    A key's request also spends its budget (429 once spent) and marks its last use
    (services/authn/key_limits.py); FastAPI runs this once per request, however many
    dependencies ask for the principal.
    """
    if bearer is not None:
        try:
            return await authenticate_access_token(ctx.settings, ctx.cache, bearer.credentials)
        except InvalidToken as exc:
            raise _unauthorized(str(exc), token_given=True) from None
    if api_key is not None:
        principal = await authenticate_api_key(ctx.store, api_key)
        if principal is None:
            raise _unauthorized("invalid or revoked API key", token_given=True)
        assert principal.api_key_id is not None  # every key's principal names its key
        await key_limits.note_use(ctx, principal.api_key_id)  # a refused request used the key all the same
        await key_limits.spend_request(ctx, request, principal.api_key_id)
        return principal
    raise _unauthorized("not authenticated", token_given=False)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]

# SQLite integers are 64-bit: a bigger id in a path is refused as invalid (422), not looked up.
ResourceId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def require_role(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting only principals with one of these roles (403 otherwise)."""
    allowed = frozenset(roles)

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the role {' or '.join(sorted(allowed))}")
        return principal

    return dependency


async def require_platform_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.platform_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs a platform admin")
    return principal


async def require_user(principal: CurrentPrincipal) -> Principal:
    """A signed-in user, not an API key (for account management a leaked key must not extend itself)."""
    if principal.via != "token":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs a signed-in user, not an API key")
    return principal


AdminPrincipal = Annotated[Principal, Depends(require_role("admin"))]
SupervisorPrincipal = Annotated[Principal, Depends(require_role("admin", "supervisor"))]
ViewerPrincipal = CurrentPrincipal  # every role reads
PlatformAdminPrincipal = Annotated[Principal, Depends(require_platform_admin)]
