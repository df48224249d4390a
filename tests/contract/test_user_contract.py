"""The user half of the accounts port for every adapter: invitations, single-use tokens, status,
the last active admin, and the audit entry each change carries.

Only port methods are used. Each test gets a fresh, empty store.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from shared.store import Store
from shared.store.accounts import LastAdmin, OneTimeToken, UserExists
from shared.store.audit import Actor, AuditEntry
from tests.contract.test_audit_contract import Stopped, mongo_only

NOW = 1_800_000_000.0


def token(value: str, expires_at: float = NOW + 3600) -> OneTimeToken:
    return OneTimeToken(hashlib.sha256(value.encode()).digest(), expires_at)


def entry(tenant_id: int, action: str, target_id: str | None = None) -> AuditEntry:
    return AuditEntry(tenant_id, Actor.system("test"), action, "user", target_id, {"n": 1})


async def test_invited_user_accepts_once(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    invite = token("invite-1")
    bob = await store.create_user(
        tenant_id=acme.id,
        email="Bob@acme.example",
        password_hash="",
        role="supervisor",
        name="Bob",
        invitation=invite,
        audit=entry(acme.id, "user.invite"),
    )
    assert (bob.status, bob.name, bob.last_login_at) == ("invited", "Bob", None)
    assert await store.user(bob.id) == bob
    assert await store.user_by_token("invite", invite.token_hash, NOW) == bob
    assert await store.user_by_token("invite", invite.token_hash, invite.expires_at) is None  # expired
    assert await store.user_by_token("reset", invite.token_hash, NOW) is None  # another purpose
    assert await store.user_by_token("invite", token("other").token_hash, NOW) is None

    assert not await store.redeem_user_token(bob.id, "invite", invite.token_hash, invite.expires_at + 1, "late")
    assert await store.redeem_user_token(bob.id, "invite", invite.token_hash, NOW, "h1")
    assert not await store.redeem_user_token(bob.id, "invite", invite.token_hash, NOW, "h2")  # spent
    accepted = await store.user(bob.id)
    assert accepted is not None and (accepted.status, accepted.password_hash) == ("active", "h1")
    assert await store.user_by_token("invite", invite.token_hash, NOW) is None

    log = await store.audit_log(acme.id)
    assert [(r.entry.action, r.entry.target_id) for r in log] == [("user.invite", str(bob.id))]


async def test_concurrent_redeems_of_one_token_have_one_winner(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    invite = token("invite-race")
    bob = await store.create_user(
        tenant_id=acme.id, email="bob@acme.example", password_hash="", role="viewer", invitation=invite
    )
    results = await asyncio.gather(
        *(
            store.redeem_user_token(
                bob.id, "invite", invite.token_hash, NOW, f"h{n}", audit=entry(acme.id, "user.accept", str(bob.id))
            )
            for n in range(8)
        )
    )
    assert sorted(results) == [False] * 7 + [True]
    winner = results.index(True)
    stored = await store.user(bob.id)
    assert stored is not None and stored.password_hash == f"h{winner}"
    assert [r.entry.action for r in await store.audit_log(acme.id)] == ["user.accept"]  # only the winner's


async def test_a_new_token_replaces_the_old_one(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    first, second = token("first"), token("second")
    bob = await store.create_user(
        tenant_id=acme.id, email="bob@acme.example", password_hash="", role="viewer", invitation=first
    )
    assert await store.set_user_token(bob.id, "invite", second)
    assert not await store.redeem_user_token(bob.id, "invite", first.token_hash, NOW, "h")
    assert not await store.set_user_token(bob.id, "reset", token("reset"))  # an invited user has no password
    assert await store.redeem_user_token(bob.id, "invite", second.token_hash, NOW, "h")
    assert not await store.set_user_token(bob.id, "invite", token("third"))  # already accepted

    reset, newer = token("reset-1"), token("reset-2")
    assert await store.set_user_token(bob.id, "reset", reset, audit=entry(acme.id, "user.password_reset_request"))
    await store.set_password_hash(bob.id, "changed")  # a password change voids a pending reset
    assert await store.user_by_token("reset", reset.token_hash, NOW) is None
    assert await store.set_user_token(bob.id, "reset", newer)
    assert await store.redeem_user_token(bob.id, "reset", newer.token_hash, NOW, "h-reset")
    assert not await store.redeem_user_token(bob.id, "reset", newer.token_hash, NOW, "again")


async def test_update_user_disables_and_re_enables(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    globex = await store.create_tenant("Globex")
    ana = await store.create_user(tenant_id=acme.id, email="ana@acme.example", password_hash="h", role="admin")
    bob = await store.create_user(tenant_id=acme.id, email="bob@acme.example", password_hash="h", role="viewer")
    carl = await store.create_user(
        tenant_id=acme.id, email="carl@acme.example", password_hash="", role="viewer", invitation=token("c")
    )
    assert await store.update_user(globex.id, bob.id, name="x") is None  # another tenant's user
    renamed = await store.update_user(
        acme.id, bob.id, name="Bob B", role="supervisor", audit=entry(acme.id, "user.update", str(bob.id))
    )
    assert renamed is not None and (renamed.name, renamed.role, renamed.status) == ("Bob B", "supervisor", "active")
    disabled = await store.update_user(acme.id, bob.id, disabled=True)
    assert disabled is not None and disabled.status == "disabled"
    assert not await store.set_user_token(bob.id, "reset", token("r"))  # a disabled user cannot reset
    enabled = await store.update_user(acme.id, bob.id, disabled=False)
    assert enabled is not None and enabled.status == "active"
    await store.update_user(acme.id, carl.id, disabled=True)
    assert not await store.redeem_user_token(carl.id, "invite", token("c").token_hash, NOW, "h")
    back = await store.update_user(acme.id, carl.id, disabled=False)
    assert back is not None and back.status == "invited"  # never accepted: invited again
    assert (await store.user(bob.id)) == enabled
    assert [u.id for u in await store.users(acme.id)] == [ana.id, bob.id, carl.id]
    assert [u.id for u in await store.users(acme.id, after_id=ana.id, limit=1)] == [bob.id]
    assert await store.users(globex.id) == []
    assert [r.entry.action for r in await store.audit_log(acme.id)] == ["user.update"]

    await store.record_login(ana.id, NOW, audit=entry(acme.id, "auth.login", str(ana.id)))
    logged = await store.user(ana.id)
    assert logged is not None and logged.last_login_at == NOW
    assert [r.entry.action for r in await store.audit_log(acme.id)] == ["auth.login", "user.update"]


async def test_the_last_active_admin_stays(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    ana = await store.create_user(tenant_id=acme.id, email="ana@acme.example", password_hash="h", role="admin")
    with pytest.raises(LastAdmin):
        await store.update_user(acme.id, ana.id, role="viewer", audit=entry(acme.id, "user.update"))
    with pytest.raises(LastAdmin):
        await store.update_user(acme.id, ana.id, disabled=True)
    assert await store.audit_log(acme.id) == []  # nothing changed, nothing recorded
    assert (await store.update_user(acme.id, ana.id, name="Ana")) is not None  # other changes still work
    # An invited admin is not an active one.
    await store.create_user(
        tenant_id=acme.id, email="inv@acme.example", password_hash="", role="admin", invitation=token("i")
    )
    with pytest.raises(LastAdmin):
        await store.update_user(acme.id, ana.id, disabled=True)
    # Another tenant's admin does not count either.
    globex = await store.create_tenant("Globex")
    await store.create_user(tenant_id=globex.id, email="gus@globex.example", password_hash="h", role="admin")
    with pytest.raises(LastAdmin):
        await store.update_user(acme.id, ana.id, role="supervisor")


async def test_two_admins_demoting_each_other_at_once_leave_one(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    admins = [
        await store.create_user(tenant_id=acme.id, email=f"a{n}@acme.example", password_hash="h", role="admin")
        for n in range(2)
    ]
    for _ in range(3):
        results = await asyncio.gather(
            store.update_user(acme.id, admins[0].id, role="viewer"),
            store.update_user(acme.id, admins[1].id, disabled=True),
            return_exceptions=True,
        )
        assert sum(isinstance(r, LastAdmin) for r in results) == 1, results
        active = [u for u in await store.users(acme.id) if u.is_active_admin]
        assert len(active) == 1
        for user in admins:  # back to two admins for the next round
            await store.update_user(acme.id, user.id, role="admin", disabled=False)


async def test_invitations_keep_emails_unique(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    globex = await store.create_tenant("Globex")
    await store.create_user(
        tenant_id=acme.id, email="bob@acme.example", password_hash="", role="viewer", invitation=token("b")
    )
    with pytest.raises(UserExists):
        await store.create_user(
            tenant_id=globex.id, email="BOB@acme.example", password_hash="", role="viewer", invitation=token("c")
        )


async def test_api_key_changes_are_audited_once(store: Store) -> None:
    acme = await store.create_tenant("Acme", audit=entry(0, "tenant.create"))
    key = await store.create_api_key(
        tenant_id=acme.id,
        name="k",
        prefix="sw_x",
        key_hash=b"k" * 32,
        role="viewer",
        audit=entry(acme.id, "api_key.create"),
    )
    assert await store.revoke_api_key(acme.id, key.id, audit=entry(acme.id, "api_key.revoke", str(key.id)))
    assert await store.revoke_api_key(acme.id, key.id, audit=entry(acme.id, "api_key.revoke", str(key.id)))
    log = [(r.entry.action, r.entry.target_id) for r in await store.audit_log(acme.id)]
    assert log == [("api_key.revoke", str(key.id)), ("api_key.create", str(key.id)), ("tenant.create", str(acme.id))]


async def test_mongo_a_user_change_stopped_before_its_entry_is_copied_gets_it_at_open(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    mongo = mongo_only(store)
    acme = await store.create_tenant("Acme")
    invite = token("invite-stop")
    bob = await store.create_user(
        tenant_id=acme.id, email="bob@acme.example", password_hash="", role="viewer", invitation=invite
    )

    async def stop(*args: Any) -> None:
        raise Stopped

    monkeypatch.setattr(mongo, "_settle_audit", stop)
    with pytest.raises(Stopped):
        await store.redeem_user_token(
            bob.id, "invite", invite.token_hash, NOW, "h", audit=entry(acme.id, "user.accept")
        )
    with pytest.raises(Stopped):
        await store.update_user(acme.id, bob.id, role="supervisor", audit=entry(acme.id, "user.update", str(bob.id)))
    assert await store.audit_log(acme.id) == []  # the changes are stored, their entries not yet visible
    monkeypatch.undo()

    await mongo.open()
    stored = await store.user(bob.id)
    assert stored is not None and (stored.status, stored.role) == ("active", "supervisor")
    assert [r.entry.action for r in await store.audit_log(acme.id)] == ["user.update", "user.accept"]
    await mongo.open()  # settling twice adds nothing
    assert len(await store.audit_log(acme.id)) == 2
