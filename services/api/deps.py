"""Typed dependencies of the API's routers: the context, the caller and its role, ids."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from services.authn.deps import AdminPrincipal, ContextDep, CurrentPrincipal, SupervisorPrincipal

# SQLite integers are 64-bit: a bigger id is refused as invalid, not looked up.
ResourceId = Annotated[int, Path(ge=1, le=2**63 - 1)]

__all__ = ["AdminPrincipal", "ContextDep", "CurrentPrincipal", "ResourceId", "SupervisorPrincipal"]
