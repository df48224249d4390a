"""Typed dependencies of the API's routers: the context, the caller and its role, ids."""

from __future__ import annotations

from services.authn.deps import AdminPrincipal, ContextDep, CurrentPrincipal, ResourceId, SupervisorPrincipal

__all__ = ["AdminPrincipal", "ContextDep", "CurrentPrincipal", "ResourceId", "SupervisorPrincipal"]
