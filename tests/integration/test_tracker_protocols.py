"""GT06, H02, the watch protocol and Teltonika end to end over real TCP (issue 18's "Done when", CONTRACT §10).

One all-in-one solewatch (every service over the embedded adapters, SMS on the local Twilio fake)
serves the whole module; each case registers its own devices through the REST API and drives them
with the protocol's `Device` (shared/protocols/<name>/device.py) on the protocol's port.
The kill -9 cases are in tests/e2e/test_tracker_crash.py.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from services.api import create_app
from services.authn.tokens import start_session
from services.components import embedded_runtime
from services.context import ServiceContext
from services.listener import metrics
from services.listener.server import Listener
from shared.bus.memory import MemoryBus
from shared.protocols.xsole import AlarmKind, Login, LoginAck
from shared.runtime import Runtime
from tests.conftest import embedded_settings
from tests.helpers.api import JWT_SECRET
from tests.helpers.fake_twilio import FakeTwilio
from tests.helpers.stored import count_stored
from tests.helpers.trackers import (
    BATTERY,
    COURSE_DDEG,
    LAT,
    LON,
    PROFILES,
    SPEED_CMS,
    TRACKERS,
    TrackerClient,
    alarms_it_can_say,
    eventually,
    imei_for,
)
from tests.helpers.xsole_client import XSoleTestClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

SUPERVISOR = "+33612345678"
# How each protocol acknowledges the SOS packet the test sends (its docs/protocols/<name>.md).
ALARM_ACKNOWLEDGED = {
    "gt06": lambda data: data[:6] == b"\x78\x78\x05\x26\x00\x02",  # the 0x26 alarm's number and serial (2)
    "h02": lambda data: b",V4,V1," in data,  # V4 confirming the V1 that carried the alarm
    "watch": lambda data: data.endswith(b"*AL]"),
    "teltonika": lambda data: data == b"\x00\x00\x00\x01",  # one record accepted
}
# What locate-now is in each protocol's bytes.
LOCATE_NOW = {
    "gt06": b"WHERE#",  # the SMS command text in an online command (0x80)
    "h02": b",D1,",
    "watch": b"*CR]",
    "teltonika": b"getgps",  # in a Codec 12 command
}
_numbers = itertools.count(1)


@dataclass
class Solewatch:
    listener: Listener
    http: httpx.AsyncClient
    headers: dict[str, str]
    tenant_id: int
    twilio: FakeTwilio

    async def register(self, protocol: str, name: str | None = None) -> str:
        """A new device of `protocol` registered through the API; its IMEI."""
        imei = imei_for(protocol, next(_numbers))
        body = {"imei": imei, "name": name or f"{protocol} {imei}", "protocol": protocol, "model": f"{protocol} model"}
        response = await self.http.post("/api/v1/devices", headers=self.headers, json=body)
        assert response.status_code == 201, response.text
        answer = response.json()
        assert "token" not in answer and answer["protocol"] == protocol, answer
        return imei

    async def connect(self, protocol: str, imei: str, port_of: str | None = None) -> TrackerClient:
        """A device of `protocol` on the port of `port_of` (its own by default)."""
        return await TrackerClient.connect(self.listener.tracker_port(port_of or protocol), protocol, imei)

    async def get(self, path: str) -> Any:
        response = await self.http.get(path, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def stored(self, imei: str) -> dict[str, int]:
        device = await self.listener.store.device_by_imei(imei)
        assert device is not None
        return await count_stored(self.listener.store, device.id)

    async def alerts(self, imei: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.get(f"/api/v1/alerts?imei={imei}"))["items"]
        return items

    async def command(self, imei: str, name: str) -> int:
        response = await self.http.post(
            f"/api/v1/devices/{imei}/commands", headers=self.headers, json={"command": name}
        )
        assert response.status_code == 202, response.text
        command_id: int = response.json()["id"]
        return command_id

    async def command_status(self, imei: str, command_id: int) -> str:
        items = (await self.get(f"/api/v1/devices/{imei}/commands"))["items"]
        [command] = [item for item in items if item["id"] == command_id]
        status: str = command["status"]
        return status


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def solewatch(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Solewatch]:
    data_dir: Path = tmp_path_factory.mktemp("trackers") / "data"
    async with FakeTwilio(account_sid="AC" + "1234abcd" * 4, auth_token="twilio-token-for-tests") as twilio:
        settings = embedded_settings(
            data_dir,
            jwt_secret=JWT_SECRET,
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            sms_from="+15005550006",
            twilio_base_url=twilio.url,
            public_url="https://solewatch.example",
            # Many refused logins from 127.0.0.1 here: held connections would only slow the module down
            # (the back-off has its own tests).
            device_login_backoff=0,
            # Bytes of another protocol may never make a login on a port: the login timeout ends them.
            login_timeout=1.5,
        )
        runtime, listener = embedded_runtime(settings, lambda: settings)
        for protocol in TRACKERS:
            listener.tracker_ports[protocol] = 0  # any free port, as SOLEWATCH_<NAME>_PORT opens one
        await runtime.start()
        try:
            context = ServiceContext(
                settings=settings, store=listener.store, cache=listener.cache, bus=MemoryBus(), commands=listener
            )
            app = create_app(context, Runtime([], lambda: settings)).other_asgi_app
            tenant_id = await listener.store.ensure_tenant("default")
            user = await listener.store.create_user(
                tenant_id=tenant_id, email="admin@t.example", password_hash="unused", role="admin"
            )
            session = await start_session(settings, context.cache, user)
            headers = {"Authorization": f"Bearer {session.access_token}"}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as http:
                contact = {"name": "Night supervisor", "phone": SUPERVISOR, "kinds": ["sos"]}
                response = await http.post("/api/v1/contacts", headers=headers, json=contact)
                assert response.status_code == 201, response.text
                yield Solewatch(listener, http, headers, tenant_id, twilio)
        finally:
            await runtime.shutdown()


async def durable(client: TrackerClient) -> None:
    """Wait until everything the device sent so far is durable: a heartbeat is acknowledged after
    it, in order (how a test sees positions stored for protocols that do not acknowledge them)."""
    await client.send(client.heartbeat(int(time.time())))
    [ack] = await client.receive()
    assert ack.kind == "ack", ack


# -- 1. register, log in, stream, see it through the API ------------------------------------------


@pytest.mark.parametrize("protocol", TRACKERS)
async def test_positions_streamed_by_a_tracker_are_shown_by_the_api_as_sent(solewatch, protocol):
    profile = PROFILES[protocol]
    imei = await solewatch.register(protocol)
    client = await solewatch.connect(protocol, imei)
    await client.log_in()
    now = int(time.time())
    sent = [(now - 50 + 10 * n, LAT + 1000 * n, LON - 1000 * n) for n in range(4)]
    for ts, lat, lon in sent:
        await client.send(client.position(ts, lat, lon))
    if client.device.acks_positions:
        assert [answer.kind for answer in await client.receive(len(sent))] == ["ack"] * len(sent)
        # Acknowledged means durable: stored before the answer went out.
        assert (await solewatch.stored(imei))["positions"] == len(sent)
    await durable(client)

    positions = (await solewatch.get(f"/api/v1/devices/{imei}/positions"))["items"]
    assert len(positions) == len(sent)
    by_time = sorted(positions, key=lambda p: p["ts"])
    for (ts, lat, lon), shown in zip(sent, by_time, strict=True):
        assert datetime.fromisoformat(shown["ts"]).timestamp() == ts
        assert shown["lat"] == pytest.approx(lat / 1e7, abs=profile.degrees_precision)
        assert shown["lon"] == pytest.approx(lon / 1e7, abs=profile.degrees_precision)
        assert shown["speed"] == pytest.approx(SPEED_CMS / 100, abs=profile.speed_precision)  # m/s
        assert shown["course"] == pytest.approx(COURSE_DDEG / 10, abs=1)
        assert shown["battery"] == (BATTERY if profile.position_battery else None)

    device = await solewatch.get(f"/api/v1/devices/{imei}")
    assert (device["protocol"], device["model"], device["online"]) == (protocol, f"{protocol} model", True)
    assert device["battery"] == BATTERY  # from the positions, or the heartbeat for those whose positions have none
    last_lat, last_lon = sent[-1][1] / 1e7, sent[-1][2] / 1e7
    assert device["last_position"]["lat"] == pytest.approx(last_lat, abs=profile.degrees_precision)
    assert device["last_position"]["lon"] == pytest.approx(last_lon, abs=profile.degrees_precision)
    await client.close()


# -- 2. an SOS: one alert, its SMS, the alarm acknowledged -------------------------------------------


@pytest.mark.parametrize("protocol", TRACKERS)
async def test_an_sos_raises_one_alert_texts_the_supervisor_and_is_acknowledged(solewatch, protocol):
    name = f"Guard on {protocol}"
    imei = await solewatch.register(protocol, name)
    client = await solewatch.connect(protocol, imei)
    await client.log_in()
    await client.send(client.sos(int(time.time()) - 5))
    [ack] = await client.receive()
    assert ack.kind == "ack" and ALARM_ACKNOWLEDGED[protocol](ack.data), ack  # or the device resends it

    alerts = await eventually(lambda: solewatch.alerts(imei))
    assert [(a["kind"], a["imei"]) for a in alerts] == [("sos", imei)]
    assert alerts[0]["lat"] == pytest.approx(LAT / 1e7, abs=PROFILES[protocol].degrees_precision)
    assert alerts[0]["battery"] == (BATTERY if PROFILES[protocol].alarm_battery else None)

    async def texted() -> list[Any]:
        return [r for r in solewatch.twilio.requests if name in (r.body or "")]

    [sms] = await eventually(texted)
    assert sms.to == SUPERVISOR and "SOS" in (sms.body or "")
    # Nothing more follows the one SOS: still one alert once the link has gone on.
    await durable(client)
    assert len(await solewatch.alerts(imei)) == 1
    await client.close()


@pytest.mark.parametrize(
    ("protocol", "kind"),
    [
        pytest.param(p, kind, id=f"{p}-{kind.alert_kind}")
        for p in TRACKERS
        for kind in alarms_it_can_say(p)
        if kind != AlarmKind.SOS
    ],
)
async def test_each_alarm_a_tracker_can_send_raises_its_alert(solewatch, protocol, kind):
    # CONTRACT §10: fall -> fall, low battery -> low_battery, removal or tamper -> tamper.
    imei = await solewatch.register(protocol)
    client = await solewatch.connect(protocol, imei)
    await client.log_in()
    await client.send(client.device.alarm(kind, ts=int(time.time()) - 5, lat_e7=LAT, lon_e7=LON, battery=BATTERY))
    [ack] = await client.receive()
    assert ack.kind == "ack", ack

    alerts = await eventually(lambda: solewatch.alerts(imei))
    assert [a["kind"] for a in alerts] == [kind.alert_kind]
    await client.close()


# -- 3. refused: retired, another protocol's device, the wrong port ------------------------------------


@pytest.mark.parametrize("protocol", TRACKERS)
async def test_a_retired_tracker_is_refused_at_login_and_nothing_is_stored(solewatch, protocol):
    imei = await solewatch.register(protocol)
    response = await solewatch.http.delete(f"/api/v1/devices/{imei}", headers=solewatch.headers)
    assert response.status_code == 204, response.text
    stored_before = metrics.stored_frames()
    client = await solewatch.connect(protocol, imei)
    now = int(time.time())
    await client.send(client.device.login(), client.position(now - 1), client.sos(now))

    answered = await client.until_closed()
    understood = client.device.feed(answered)
    assert all(a.kind == "login" and not a.accepted for a in understood), understood
    assert metrics.stored_frames() == stored_before  # no other device streams meanwhile in this module
    assert await solewatch.get(f"/api/v1/alerts?imei={imei}") == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("protocol", TRACKERS)
async def test_an_xsole_device_is_refused_on_a_tracker_port(solewatch, protocol):
    imei = imei_for(protocol, next(_numbers))
    body = {"imei": imei, "name": "insole", "protocol": "xsole"}
    assert (await solewatch.http.post("/api/v1/devices", headers=solewatch.headers, json=body)).status_code == 201
    client = await solewatch.connect(protocol, imei)
    now = int(time.time())
    await client.send(client.device.login(), client.position(now - 1), client.sos(now))

    understood = client.device.feed(await client.until_closed())
    assert all(a.kind == "login" and not a.accepted for a in understood), understood
    assert (await solewatch.stored(imei)) == {"positions": 0, "heartbeats": 0, "activities": 0, "alarms": 0}


@pytest.mark.parametrize(("protocol", "port_of"), [(p, TRACKERS[(i + 1) % 4]) for i, p in enumerate(TRACKERS)])
async def test_a_tracker_is_refused_on_another_protocols_port(solewatch, protocol, port_of):
    # The device speaks its own protocol on another protocol's port: the bytes are not that protocol's,
    # or name a device registered for another one. Either way nothing is stored and the link ends.
    imei = await solewatch.register(protocol)
    speaker = await solewatch.connect(port_of, imei, port_of=port_of)  # a device of the port's protocol, same IMEI
    now = int(time.time())
    await speaker.send(speaker.device.login(), speaker.position(now - 1), speaker.sos(now))
    understood = speaker.device.feed(await speaker.until_closed())
    assert all(a.kind == "login" and not a.accepted for a in understood), understood

    stranger = await solewatch.connect(protocol, imei, port_of=port_of)  # its own bytes on the wrong port
    await stranger.send(stranger.device.login(), stranger.position(now - 3), stranger.sos(now - 2))
    await stranger.until_closed(timeout=5)  # at once when the bytes cannot be framed, else at the login timeout
    assert (await solewatch.stored(imei)) == {"positions": 0, "heartbeats": 0, "activities": 0, "alarms": 0}


@pytest.mark.parametrize("protocol", TRACKERS)
async def test_a_tracker_is_refused_on_the_xsole_port(solewatch, protocol):
    imei = await solewatch.register(protocol)
    insole = await XSoleTestClient.connect("127.0.0.1", solewatch.listener.port)
    await insole.send(Login(7, imei, 0x0102, bytes(16)), insole.position())

    frames = await insole.frames_until_closed()

    assert [(type(f), f.seq, f.status) for f in frames] == [(LoginAck, 7, 1)]  # as an unknown device
    assert (await solewatch.stored(imei))["positions"] == 0


# -- 5. commands ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", TRACKERS)
async def test_locate_now_reaches_the_device_in_its_bytes_and_its_answer_marks_it_done(solewatch, protocol):
    imei = await solewatch.register(protocol)
    client = await solewatch.connect(protocol, imei)
    await client.log_in()
    await client.send(client.position(int(time.time()) - 1))  # H02 and watch devices log in with it
    if client.device.acks_positions:
        await client.receive()
    await durable(client)  # logged in and online
    command_id = await solewatch.command(imei, "locate-now")

    [received] = await client.receive()
    assert received.kind == "command" and received.command == 1, received  # CommandCode.LOCATE_NOW
    assert LOCATE_NOW[protocol] in received.data, received
    assert await solewatch.command_status(imei, command_id) == "sent"
    await client.send(client.device.answer(received))

    async def done() -> bool:
        return await solewatch.command_status(imei, command_id) == "done"

    assert await eventually(done)
    await client.close()


@pytest.mark.parametrize("protocol", [p for p in TRACKERS if PROFILES[p].command_it_cannot_carry])
async def test_a_command_the_protocol_cannot_carry_ends_unsupported_at_once(solewatch, protocol):
    imei = await solewatch.register(protocol)
    client = await solewatch.connect(protocol, imei)
    await client.log_in()
    await client.send(client.heartbeat(int(time.time())))
    await client.receive()
    command_id = await solewatch.command(imei, str(PROFILES[protocol].command_it_cannot_carry))

    async def finished() -> str | None:
        status = await solewatch.command_status(imei, command_id)
        return status if status not in ("queued", "sent") else None

    assert await eventually(finished) == "unsupported"
    # Nothing went to the device, and its connection goes on.
    await client.send(client.heartbeat(int(time.time())))
    [answer] = await client.receive()
    assert answer.kind == "ack"
    await client.close()


async def test_vibrate_reaches_a_watch_as_find(solewatch):
    imei = await solewatch.register("watch")
    client = await solewatch.connect("watch", imei)
    await durable(client)
    command_id = await solewatch.command(imei, "vibrate")
    [received] = await client.receive()
    assert received.kind == "command" and received.data.endswith(b"*FIND]"), received
    await client.send(client.device.answer(received))

    async def done() -> bool:
        return await solewatch.command_status(imei, command_id) == "done"

    assert await eventually(done)
    await client.close()
