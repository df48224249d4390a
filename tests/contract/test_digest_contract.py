"""The weekly digest's storage for every adapter in STORE_FACTORIES: who asked for it (accounts
port: `weekly_digest`, `set_weekly_digest`, `digest_recipients`) and the claim that makes one
digest per tenant and week (`claim_weekly_digest`, `finish_weekly_digest`).

Only port methods are used. Each test gets a fresh, empty store.
"""

from __future__ import annotations

import asyncio
import time

from shared.store import Store
from shared.store.accounts import Role
from shared.store.audit import Actor, AuditEntry


def change(tenant_id: int, user_id: int, weekly_digest: bool) -> AuditEntry:
    return AuditEntry(
        tenant_id,
        Actor("user", str(user_id), "me"),
        "user.update",
        "user",
        str(user_id),
        {"weekly_digest": weekly_digest},
    )


async def user(store: Store, tenant_id: int, email: str, role: Role = "admin") -> int:
    return (await store.create_user(tenant_id=tenant_id, email=email, password_hash="x", role=role)).id


async def test_opting_in_and_out_is_audited_once_per_change(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    ann = await user(store, tenant, "ann@acme.example")
    assert await store.weekly_digest(ann) is False  # off until asked for

    assert await store.set_weekly_digest(ann, True, audit=change(tenant, ann, True))
    assert await store.weekly_digest(ann) is True
    assert await store.set_weekly_digest(ann, True, audit=change(tenant, ann, True))  # no change: no entry
    assert await store.set_weekly_digest(ann, False, audit=change(tenant, ann, False))
    assert await store.weekly_digest(ann) is False
    assert await store.set_weekly_digest(ann, False, audit=change(tenant, ann, False))  # no change: no entry

    log = [(r.entry.action, r.entry.detail) for r in reversed(await store.audit_log(tenant))]
    assert log == [("user.update", {"weekly_digest": True}), ("user.update", {"weekly_digest": False})]
    assert await store.set_weekly_digest(ann + 1000, True) is False  # no such user
    assert await store.weekly_digest(ann + 1000) is False


async def test_recipients_are_the_tenants_active_admins_who_asked(store: Store) -> None:
    tenant, other = await store.ensure_tenant("acme"), await store.ensure_tenant("globex")
    ann = await user(store, tenant, "ann@acme.example")
    bea = await user(store, tenant, "bea@acme.example")  # never asked
    cid = await user(store, tenant, "cid@acme.example", "supervisor")  # asked, not an admin
    dee = await user(store, tenant, "dee@acme.example")  # asked, then disabled
    eve = await user(store, tenant, "eve@acme.example")  # asked, later demoted
    zed = await user(store, other, "zed@globex.example")  # another tenant's
    for asked in (ann, cid, dee, eve, zed):
        assert await store.set_weekly_digest(asked, True)
    await store.update_user(tenant, dee, disabled=True)
    await store.update_user(tenant, eve, role="viewer")

    assert [u.id for u in await store.digest_recipients(tenant)] == [ann]
    assert [u.email for u in await store.digest_recipients(other)] == ["zed@globex.example"]
    await store.update_user(tenant, eve, role="admin")  # promoted again: gets it again, still opted in
    assert [u.id for u in await store.digest_recipients(tenant)] == [ann, eve]
    assert bea not in {u.id for u in await store.digest_recipients(tenant)}


async def test_one_claim_per_tenant_and_week(store: Store) -> None:
    tenant, other = await store.ensure_tenant("acme"), await store.ensure_tenant("globex")
    long_ago = time.time() - 3600
    claims = await asyncio.gather(
        *(store.claim_weekly_digest(tenant, "2026-W10", stale_before=long_ago) for _ in range(5))
    )
    assert sorted(claims) == [False, False, False, False, True]
    # Another week, another tenant: claims of their own.
    assert await store.claim_weekly_digest(tenant, "2026-W11", stale_before=long_ago)
    assert await store.claim_weekly_digest(other, "2026-W10", stale_before=long_ago)


async def test_an_unfinished_claim_is_taken_over_once_stale_a_finished_one_never(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    assert await store.claim_weekly_digest(tenant, "2026-W10", stale_before=0)
    # Its sender stopped before finishing: a claim made before `stale_before` is taken, by one caller
    # (whose claim, made after `stale_before`, is not stale in turn).
    await asyncio.sleep(0.01)  # so the first claim is strictly older, whatever the clock's resolution
    now = time.time()
    takeovers = await asyncio.gather(
        *(store.claim_weekly_digest(tenant, "2026-W10", stale_before=now) for _ in range(3))
    )
    assert sorted(takeovers) == [False, False, True]
    await store.finish_weekly_digest(tenant, "2026-W10", recipients=2)
    assert not await store.claim_weekly_digest(tenant, "2026-W10", stale_before=time.time() + 3600)
