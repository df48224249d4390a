"""The audit port (shared/store/audit.py) for every adapter in STORE_FACTORIES: entries
appended alone or with the change they record, read newest first with filters and paging,
never across tenants.

Only port methods are used, except in the last tests, which stop a MongoDB write half way
(what SQLite's transaction makes impossible) and check the next open finishes it.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.store import Store
from shared.store.audit import Actor, AuditEntry
from shared.store.mongo import MongoStore

ALICE = Actor("user", "1", "alice@example.com")


def entry(tenant_id: int, action: str = "positions.read", target_id: str | None = "356307042441013", **detail: Any):
    return AuditEntry(tenant_id, ALICE, action, "device", target_id, detail)


async def test_an_entry_reads_back_as_written(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    written = await store.record_audit(entry(tenant, since=1.5, until=None))
    [read] = await store.audit_log(tenant)
    assert read == written
    assert read.entry == entry(tenant, since=1.5, until=None)
    assert read.id >= 1 and read.at > 0


async def test_newest_first_with_filters_and_paging(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    records = [await store.record_audit(entry(tenant, "auth.login" if i % 2 else "positions.read")) for i in range(7)]
    assert [r.id for r in await store.audit_log(tenant)] == [r.id for r in reversed(records)]
    assert [r.id for r in await store.audit_log(tenant, action="auth.login")] == [
        records[5].id,
        records[3].id,
        records[1].id,
    ]

    first = await store.audit_log(tenant, limit=3)
    second = await store.audit_log(tenant, limit=3, before_id=first[-1].id)
    assert [r.id for r in first + second] == [r.id for r in reversed(records)][:6]

    middle = records[3].at
    assert all(r.at >= middle for r in await store.audit_log(tenant, since=middle))
    assert all(r.at < middle for r in await store.audit_log(tenant, until=middle))
    assert len(await store.audit_log(tenant, since=middle)) + len(await store.audit_log(tenant, until=middle)) == 7


async def test_a_tenant_never_reads_another_tenants_entries(store: Store) -> None:
    acme, globex = await store.ensure_tenant("acme"), await store.ensure_tenant("globex")
    await store.record_audit(entry(acme))
    assert await store.audit_log(globex) == []
    assert len(await store.audit_log(acme)) == 1


async def test_a_change_writes_its_entry_and_names_what_it_created(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    created = AuditEntry(tenant, ALICE, "contact.create", "contact", None, {"name": "Bob"})
    contact = await store.add_contact(
        tenant_id=tenant, name="Bob", email="bob@example.com", phone=None, kinds=("sos",), audit=created
    )
    deleted = AuditEntry(tenant, ALICE, "contact.delete", "contact", str(contact.id))
    assert await store.delete_contact(tenant, contact.id, audit=deleted)
    # Nothing deleted, nothing recorded.
    assert not await store.delete_contact(tenant, contact.id, audit=deleted)

    log = await store.audit_log(tenant)
    assert [(r.entry.action, r.entry.target_id) for r in log] == [
        ("contact.delete", str(contact.id)),
        ("contact.create", str(contact.id)),
    ]
    assert log[1].entry.detail == {"name": "Bob"}
    assert await store.contacts(tenant) == []


# -- MongoDB: a write stopped half way is finished at the next open ---------------------


class Stopped(Exception):
    """The process 'stops' here."""


def mongo_only(store: Store) -> MongoStore:
    adapter = getattr(store, "_store", store)  # the emulator's wrapper keeps the adapter there
    if not isinstance(adapter, MongoStore):
        pytest.skip("a MongoDB adapter's recovery: SQLite writes the change and its entry in one transaction")
    return adapter


async def test_mongo_an_insert_stopped_before_its_entry_is_copied_gets_it_at_open(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    mongo = mongo_only(store)
    tenant = await store.ensure_tenant("acme")

    async def stop(*args: Any) -> None:
        raise Stopped

    monkeypatch.setattr(mongo, "_settle_audit", stop)
    created = AuditEntry(tenant, ALICE, "contact.create", "contact", None)
    with pytest.raises(Stopped):
        await store.add_contact(tenant_id=tenant, name="Bob", email=None, phone="+33612345678", kinds=(), audit=created)
    assert await store.audit_log(tenant) == []  # the change is stored, its entry not yet visible
    monkeypatch.undo()

    await mongo.open()
    [contact] = await store.contacts(tenant)
    [record] = await store.audit_log(tenant)
    assert (record.entry.action, record.entry.target_id) == ("contact.create", str(contact.id))
    await mongo.open()  # settling twice adds nothing
    assert len(await store.audit_log(tenant)) == 1


async def test_mongo_a_delete_stopped_after_its_entry_is_rolled_forward_at_open(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    mongo = mongo_only(store)
    tenant = await store.ensure_tenant("acme")
    contact = await store.add_contact(tenant_id=tenant, name="Bob", email=None, phone="+33612345678", kinds=())
    collection = type(mongo._db.contacts)

    async def stop(*args: Any, **kwargs: Any) -> None:
        raise Stopped

    monkeypatch.setattr(collection, "delete_one", stop)
    with pytest.raises(Stopped):
        await store.delete_contact(
            tenant, contact.id, audit=AuditEntry(tenant, ALICE, "contact.delete", "contact", "1")
        )
    monkeypatch.undo()
    assert await store.audit_log(tenant) == []  # asked for, not yet done: not in the log
    assert len(await store.contacts(tenant)) == 1

    await mongo.open()
    assert await store.contacts(tenant) == []
    assert [r.entry.action for r in await store.audit_log(tenant)] == ["contact.delete"]
