"""The users of a tenant (CONTRACT §5): list, invite, change role or name, disable.

Tenant admins only, signed in: an API key never manages users (a leaked key
must not mint itself a colleague). Disabling a user or changing its role ends
every session it has (access tokens refused at once, refresh tokens void, live
sockets closed by services/wss): a role lives in the access token, so the
user signs in again to work with the new one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from services.authn import account_mail
from services.authn.account_mail import LinkToken
from services.authn.deps import AdminPrincipal, ContextDep, Principal, ResourceId, require_user
from services.authn.models import ErrorOut, Invitation, UserInvite, UserInvited, UserPage, UserPatch, UserView, utc
from services.authn.routes import error_responses
from services.authn.tokens import revoke_user_sessions
from shared.logging import get_logger
from shared.store.accounts import LastAdmin, User, UserExists

log = get_logger("solewatch.authn")

router = APIRouter(prefix="/api/v1", tags=["users"])

MAX_LIMIT = 1000
_CURSOR = r"^[0-9]{1,18}$"  # the last id of the previous page


async def _user_manager(principal: AdminPrincipal) -> Principal:
    return await require_user(principal)


UserManager = Annotated[Principal, Depends(_user_manager)]


@router.get("/users", summary="List the tenant's users", responses=error_responses(401, 403))
async def list_users(
    principal: UserManager,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = 100,
    cursor: Annotated[str | None, Query(pattern=_CURSOR, description="`next_cursor` of the previous page")] = None,
) -> UserPage:
    """Admins only, oldest account first."""
    users = await ctx.store.users(principal.tenant_id, after_id=int(cursor) if cursor else None, limit=limit + 1)
    page = users[:limit]
    return UserPage(
        items=[UserView.of(user) for user in page], next_cursor=str(page[-1].id) if len(users) > limit else None
    )


@router.post(
    "/users",
    summary="Invite a user",
    status_code=status.HTTP_201_CREATED,
    responses={
        **error_responses(401, 403),
        409: {"model": ErrorOut, "description": "that email already has an account (in any tenant)"},
    },
)
async def invite_user(body: UserInvite, principal: UserManager, ctx: ContextDep) -> UserInvited:
    """The user is `invited` and gets an email with a single-use link, valid 72 hours, to choose a
    password. Without an SMTP server (or when it refuses the email) the answer says so and holds
    the link, for the admin to hand over another way."""
    invite = LinkToken.new("invite")
    try:
        user = await ctx.store.create_user(
            tenant_id=principal.tenant_id,
            email=body.email,
            password_hash="",
            role=body.role,
            name=body.name,
            invitation=invite.stored,
            audit=principal.audit("user.invite", "user", email=body.email.lower(), role=body.role, name=body.name),
        )
    except UserExists:
        raise HTTPException(status.HTTP_409_CONFLICT, "that email already has an account") from None
    log.info("user_invited", user_id=user.id, tenant_id=user.tenant_id, by=principal.actor)
    invitation = await _send_invitation(ctx, principal, user, invite)
    return UserInvited(**UserView.of(user).model_dump(), invitation=invitation)


@router.post(
    "/users/{user_id}/invitation",
    summary="Send a new invitation link",
    responses={
        **error_responses(401, 403, 404),
        409: {"model": ErrorOut, "description": "the user is not invited (already active, or disabled)"},
    },
)
async def reinvite_user(user_id: ResourceId, principal: UserManager, ctx: ContextDep) -> Invitation:
    """For an `invited` user whose link was lost or expired: a new link, valid 72 hours, replaces
    the old one, which stops working."""
    user = await _tenant_user(ctx, principal, user_id)
    invite = LinkToken.new("invite")
    audit = principal.audit("user.invite", "user", user.id, email=user.email, resent=True)
    if not await ctx.store.set_user_token(user.id, "invite", invite.stored, audit=audit):
        raise HTTPException(status.HTTP_409_CONFLICT, "only an invited user can be invited again")
    return await _send_invitation(ctx, principal, user, invite)


@router.patch(
    "/users/{user_id}",
    summary="Change a user's name or role, disable or re-enable it",
    responses={
        **error_responses(401, 403, 404),
        409: {"model": ErrorOut, "description": "the tenant would be left without an active admin"},
    },
)
async def update_user(user_id: ResourceId, body: UserPatch, principal: UserManager, ctx: ContextDep) -> UserView:
    """Disabling signs the user out everywhere within seconds and it can no longer sign in; a role
    change also signs it out (its sessions carry the old role). The last active admin can be
    neither demoted nor disabled."""
    user = await _tenant_user(ctx, principal, user_id)
    changes = {
        field: [getattr(user, field) if field != "disabled" else user.status == "disabled", value]
        for field, value in body.model_dump(exclude_none=True).items()
    }
    changes = {field: pair for field, pair in changes.items() if pair[0] != pair[1]}
    if not changes:
        if user.status == "disabled":  # again: the sessions' revocation may have failed the first time
            await revoke_user_sessions(ctx.settings, ctx.cache, user.id)
        return UserView.of(user)
    audit = principal.audit("user.update", "user", user.id, **changes)
    try:
        changed = await ctx.store.update_user(
            principal.tenant_id,
            user.id,
            name=body.name,
            role=body.role,
            disabled=body.disabled,
            audit=audit,
        )
    except LastAdmin:
        raise HTTPException(status.HTTP_409_CONFLICT, "the tenant needs at least one active admin") from None
    if changed is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
    if changed.status == "disabled" or changed.role != user.role:
        await revoke_user_sessions(ctx.settings, ctx.cache, user.id)
    log.info("user_updated", user_id=user.id, tenant_id=user.tenant_id, changed=sorted(changes), by=principal.actor)
    return UserView.of(changed)


async def _tenant_user(ctx: ContextDep, principal: Principal, user_id: int) -> User:
    user = await ctx.store.user(user_id)
    if user is None or user.tenant_id != principal.tenant_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
    return user


async def _send_invitation(ctx: ContextDep, principal: Principal, user: User, invite: LinkToken) -> Invitation:
    url = account_mail.link(ctx.settings, "invite", invite.token)
    tenant = await ctx.store.tenant(user.tenant_id)
    sent = await account_mail.send(
        ctx.settings,
        to=user.email,
        subject="[solewatch] You are invited",
        text=account_mail.invitation_text(
            url=url, inviter=principal.actor, tenant=tenant.name if tenant else "a team", role=user.role
        ),
    )
    return Invitation(email_sent=sent, expires_at=utc(invite.stored.expires_at), link=None if sent else url)
