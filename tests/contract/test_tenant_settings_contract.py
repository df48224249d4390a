"""Tenant settings (shared/store/tenant_settings.py) for every store adapter: defaults, a
replace that reads back, one tenant never seeing another's, the audit entry written with it."""

from __future__ import annotations

from typing import Any

import pytest

from shared.store import Store
from shared.store.audit import Actor, AuditEntry
from shared.store.tenant_settings import TenantSettings
from tests.contract.test_audit_contract import Stopped, mongo_only

ADMIN = Actor("user", "1", "admin@example.com")


def entry(tenant_id: int, settings: TenantSettings) -> AuditEntry:
    return AuditEntry(tenant_id, ADMIN, "settings.update", "tenant", str(tenant_id), settings.as_dict())


async def test_a_tenant_without_settings_has_the_defaults(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    assert await store.tenant_settings(tenant) == TenantSettings(90, 730, "always")


async def test_settings_are_replaced_and_read_back_per_tenant(store: Store) -> None:
    acme, globex = await store.ensure_tenant("acme"), await store.ensure_tenant("globex")
    strict = TenantSettings(telemetry_retention_days=7, alert_retention_days=30, location_visibility="alerts_only")
    await store.set_tenant_settings(acme, strict)
    assert await store.tenant_settings(acme) == strict
    assert await store.tenant_settings(globex) == TenantSettings()  # another tenant's change is not its own

    shift = TenantSettings(telemetry_retention_days=3650, alert_retention_days=3650, location_visibility="on_shift")
    await store.set_tenant_settings(globex, shift)
    await store.set_tenant_settings(acme, TenantSettings(location_visibility="on_shift"))
    assert await store.tenant_settings(acme) == TenantSettings(90, 730, "on_shift")
    assert await store.tenant_settings(globex) == shift


async def test_each_change_writes_its_audit_entry(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    first, second = TenantSettings(telemetry_retention_days=30), TenantSettings(telemetry_retention_days=60)
    await store.set_tenant_settings(tenant, first, audit=entry(tenant, first))
    await store.set_tenant_settings(tenant, second, audit=entry(tenant, second))
    logged = [(r.entry.action, r.entry.target_type, r.entry.detail) for r in await store.audit_log(tenant)]
    assert logged == [
        ("settings.update", "tenant", second.as_dict()),
        ("settings.update", "tenant", first.as_dict()),
    ]


async def test_mongo_a_change_stopped_before_its_entry_is_copied_gets_it_at_open(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    mongo = mongo_only(store)
    tenant = await store.ensure_tenant("acme")

    async def stop(*args: Any) -> None:
        raise Stopped

    monkeypatch.setattr(mongo, "_settle_audit", stop)
    changed = TenantSettings(alert_retention_days=60)
    with pytest.raises(Stopped):
        await store.set_tenant_settings(tenant, changed, audit=entry(tenant, changed))
    assert await store.tenant_settings(tenant) == changed  # stored; its entry not yet in the log
    assert await store.audit_log(tenant) == []
    monkeypatch.undo()

    await mongo.open()
    [record] = await store.audit_log(tenant)
    assert (record.entry.action, record.entry.detail) == ("settings.update", changed.as_dict())
