"""Who is calling: FastAPI dependencies that every protected route uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request

from shared.store.accounts import Role


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

    @property
    def actor(self) -> str:
        """How this caller appears in an alert's timeline."""
        return self.email or f"api-key:{self.api_key_id}"


async def current_principal(request: Request) -> Principal:
    """Resolve `Authorization: Bearer` or `X-API-Key` to a principal; 401 otherwise."""
    raise NotImplementedError("implemented by the authn service")


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
