"""The Web Push half of the storage port (shared/store/push.py), for every store adapter."""

from __future__ import annotations

import asyncio

from shared.store import Store


async def test_a_subscription_is_kept_per_endpoint_and_listed_per_tenant(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    other = await store.ensure_tenant("other")
    first = await store.add_push_subscription(
        tenant_id=acme, user_id=3, endpoint="https://push.example/a", p256dh="key-a", auth="auth-a"
    )
    await store.add_push_subscription(
        tenant_id=other, user_id=9, endpoint="https://push.example/b", p256dh="key-b", auth="auth-b"
    )
    assert [(s.user_id, s.endpoint, s.p256dh, s.auth) for s in await store.push_subscriptions(acme)] == [
        (3, "https://push.example/a", "key-a", "auth-a")
    ]

    # The same browser subscribing again (new keys, now signed in as someone else) replaces it, keeping its id.
    again = await store.add_push_subscription(
        tenant_id=acme, user_id=4, endpoint="https://push.example/a", p256dh="key-a2", auth="auth-a2"
    )
    assert again.id == first.id
    [kept] = await store.push_subscriptions(acme)
    assert (kept.id, kept.user_id, kept.p256dh, kept.auth) == (first.id, 4, "key-a2", "auth-a2")


async def test_a_subscription_is_deleted_only_within_its_tenant_and_for_its_user(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    other = await store.ensure_tenant("other")
    sub = await store.add_push_subscription(
        tenant_id=acme, user_id=3, endpoint="https://push.example/a", p256dh="k", auth="a"
    )
    assert not await store.delete_push_subscription(other, sub.id)
    assert not await store.delete_push_subscription(acme, sub.id, user_id=4)
    assert await store.push_subscriptions(acme) != []
    assert await store.delete_push_subscription(acme, sub.id, user_id=3)
    assert not await store.delete_push_subscription(acme, sub.id)
    assert await store.push_subscriptions(acme) == []


async def test_the_vapid_key_is_kept_once_whoever_offers_one(store: Store) -> None:
    kept = await asyncio.gather(*(store.keep_vapid_private_key(f"key-{n}") for n in range(5)))
    assert len(set(kept)) == 1 and kept[0].startswith("key-")
    assert await store.keep_vapid_private_key("another") == kept[0]
