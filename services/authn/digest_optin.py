"""/api/v1/auth/me/digest: whether the caller gets the weekly digest email (docs/reports.md).

A setting of the signed-in user's own, so it sits beside `/auth/me` rather
than on `/users/{id}` (an admin managing someone else's account). An API
key has no mailbox: it is refused.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field

from services.authn.deps import ContextDep, Principal, require_user
from services.authn.models import ErrorOut

router = APIRouter(prefix="/api/v1/auth/me", tags=["auth"])

SignedInUser = Annotated[Principal, Depends(require_user)]


class DigestChoice(BaseModel):
    weekly_digest: bool = Field(
        strict=True,  # JSON's true or false only: "yes" or 1 is a mistake to refuse, not to guess
        description="send me the weekly digest email (off by default); only admins receive it, so a"
        " supervisor's or viewer's choice takes effect once they are made admin",
    )


_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut, "description": "an API key: only a signed-in user has this setting"},
}


@router.get("/digest", summary="Whether I get the weekly digest email", responses=_RESPONSES)
async def get_digest(principal: SignedInUser, ctx: ContextDep) -> DigestChoice:
    assert principal.user_id is not None  # a signed-in user
    return DigestChoice(weekly_digest=await ctx.store.weekly_digest(principal.user_id))


@router.put("/digest", summary="Ask for the weekly digest email, or stop it", responses=_RESPONSES)
async def put_digest(body: DigestChoice, principal: SignedInUser, ctx: ContextDep) -> DigestChoice:
    """Any signed-in user may set their own choice; the digest goes to active admins only.
    A change is recorded in the audit log as `user.update` with `weekly_digest`."""
    assert principal.user_id is not None
    audit = principal.audit("user.update", "user", principal.user_id, weekly_digest=body.weekly_digest)
    if not await ctx.store.set_weekly_digest(principal.user_id, body.weekly_digest, audit=audit):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the signed-in user no longer exists")
    return body
