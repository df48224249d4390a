"""shared/protocols/registry.py: which codec speaks each protocol, and what identifies its devices."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from services.listener.ingest import login_verdict
from services.listener.server import Listener
from shared.protocols import registry
from shared.protocols.xsole import AckStatus, DeviceSession, LoginStatus
from shared.protocols.xsole.messages import Alarm, Login, encode_acks
from shared.store import Device, hash_device_token
from shared.store.sqlite import SqliteStore
from tests.conftest import embedded_settings
from tests.helpers.fake_tracker import FakeDevice, FakeSession


def test_a_registered_protocol_is_found_and_forgotten() -> None:
    registry.register("fake", FakeSession, FakeDevice, imei_digits=(12, 15))
    try:
        codec = registry.codec("fake")
        assert (codec.session, codec.device) == (FakeSession, FakeDevice)
        assert "fake" in registry.protocols()
        assert registry.imei_problem("fake", "123456789012") is None
    finally:
        registry.unregister("fake")
    with pytest.raises(registry.UnknownProtocol):
        registry.codec("fake")
    assert registry.imei_problem("fake", "123456789012") is not None


@pytest.mark.parametrize("protocol", ["gt06", "h02", "watch", "teltonika"])
def test_each_tracker_protocol_has_its_codec_package(protocol: str) -> None:
    codec = registry.codec(protocol)
    assert codec.session.protocol == codec.device.protocol == protocol
    assert codec.session.__module__.startswith(f"shared.protocols.{protocol}.")


@pytest.mark.parametrize("protocol", ["gt06", "h02", "watch", "teltonika"])
def test_a_missing_codec_package_is_a_clear_error(monkeypatch, protocol: str) -> None:
    monkeypatch.setattr(registry, "_registered", {})  # nothing looked up yet
    monkeypatch.setitem(sys.modules, f"shared.protocols.{protocol}", None)  # as if not installed
    with pytest.raises(registry.CodecMissing, match=f"the {protocol} protocol.s codec"):
        registry.codec(protocol)


def test_xsole_and_unknown_names_have_no_tracker_codec() -> None:
    for name in ("xsole", "tk103", ""):
        with pytest.raises(registry.UnknownProtocol):
            registry.codec(name)


async def test_a_port_turned_on_for_a_protocol_without_its_codec_stops_the_listener_before_it_listens(
    monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(registry, "_registered", {})  # nothing looked up yet
    monkeypatch.setattr(
        registry.importlib,
        "import_module",
        lambda name: (_ for _ in ()).throw(ModuleNotFoundError(f"No module named {name!r}", name=name)),
    )
    settings = embedded_settings(tmp_path / "data", teltonika_port=1)  # never bound: the check comes first
    store = SqliteStore(tmp_path / "solewatch.db")
    await store.open()
    try:
        listener = Listener(settings, store)
        assert listener.tracker_ports == {"teltonika": 1}
        with pytest.raises(registry.CodecMissing, match=r"teltonika protocol's codec \(shared/protocols/teltonika/\)"):
            await listener.start()
        assert listener._server is None
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("protocol", "imei", "problem"),
    [
        ("xsole", "356307042441013", None),
        ("xsole", "3563070424410", "a xsole device's imei is 15 digits"),
        ("gt06", "0356307042441013", "a gt06 device's imei is 15 digits"),
        ("h02", "4209951530", None),
        ("h02", "420995153", "a h02 device's imei is 10 to 15 digits"),
        ("watch", "12345678901２", "a watch device's imei is 10 to 15 digits"),  # a full-width digit
        ("tk103", "356307042441013", "unknown protocol 'tk103'"),
    ],
)
def test_imei_rules_by_protocol(protocol: str, imei: str, problem: str | None) -> None:
    found = registry.imei_problem(protocol, imei)
    assert found == problem if problem is None else found is not None and found.startswith(problem)


@pytest.mark.parametrize("status", list(AckStatus))
def test_the_xsole_session_builds_the_same_acks_as_before(status: AckStatus) -> None:
    seqs = [0, 1, 0xFFFF, 42]
    assert DeviceSession().acks(seqs, status) == encode_acks(seqs, status)


@pytest.mark.parametrize(
    ("registered_for", "enabled", "token", "port", "verdict"),
    [
        ("xsole", True, b"secret", "xsole", "ACCEPTED"),
        ("xsole", True, b"wrong!", "xsole", "BAD_TOKEN"),
        ("xsole", False, b"secret", "xsole", "DISABLED"),
        ("gt06", True, b"", "gt06", "ACCEPTED"),  # no secret to check
        ("gt06", False, b"", "gt06", "DISABLED"),
        ("gt06", True, b"", "h02", "UNKNOWN_DEVICE"),  # another protocol's port: as unknown
        ("gt06", True, b"", "xsole", "UNKNOWN_DEVICE"),  # even with any token
        ("xsole", True, b"secret", "teltonika", "UNKNOWN_DEVICE"),
        (None, True, b"", "watch", "UNKNOWN_DEVICE"),
    ],
)
def test_the_login_verdict_by_protocol(
    registered_for: str | None, enabled: bool, token: bytes, port: str, verdict: str
) -> None:
    device = (
        None
        if registered_for is None
        else Device(
            1,
            1,
            "356307042441013",
            "w",
            hash_device_token(b"secret") if registered_for == "xsole" else b"",
            enabled,
            0.0,
            protocol=registered_for,
        )
    )
    assert login_verdict(device, token, port) is LoginStatus[verdict]


ALARMS = [
    (p, kind) for p in ("gt06", "h02", "watch", "teltonika") for kind in sorted(registry.codec(p).device.alarm_kinds)
]


@pytest.mark.parametrize(("protocol", "kind"), ALARMS)
def test_every_alarm_a_device_says_it_can_send_reaches_the_listener_as_that_alarm(protocol: str, kind: int) -> None:
    codec = registry.codec(protocol)
    imei = "359999000000017" if protocol in ("gt06", "teltonika") else "4209951530"
    device, session = codec.device(imei), codec.session()
    now = int(time.time())
    session.receive_data(
        device.login() + device.alarm(kind, ts=now - 5, lat_e7=525_000_000, lon_e7=134_000_000, battery=60)
    )
    alarms = []
    while (event := session.next_event()) is not None:
        if isinstance(event, Login):
            session.accept_login(event.imei, now, 0)
        elif isinstance(event, Alarm):
            alarms.append(event)
    assert [a.kind for a in alarms] == [kind]
