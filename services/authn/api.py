"""Every authn path under /api/v1, as one router for the app factory."""

from __future__ import annotations

from fastapi import APIRouter

from services.authn import digest_optin, recovery, routes, users

router = APIRouter()
router.include_router(routes.router)
router.include_router(recovery.router)
router.include_router(users.router)
router.include_router(digest_optin.router)
