"""The whole contract, black-box, real clients only, against both ways to run:
`solewatch run` as one subprocess, and the distributed mode (every service its
own process, two listeners and two wss, on real RabbitMQ and Redis).

XSole frames over TCP, httpx for REST, the python-socketio client for live
events and an aiosmtpd server receiving the alert emails.
"""

from __future__ import annotations

import asyncio
import re
import time
from email import message_from_bytes

import httpx
import pytest
import socketio
from aiosmtpd.controller import Controller

from shared.alerts import iso_utc
from shared.protocols.xsole import (
    Activity,
    Alarm,
    AlarmKind,
    Command,
    CommandCode,
    CommandResult,
    Heartbeat,
    Position,
)
from tests.e2e.deployments import AllInOne, Distributed
from tests.helpers.process import free_port
from tests.helpers.xsole_client import XSoleTestClient

pytestmark = pytest.mark.slow

ADMIN = ("admin@acme.example", "correct horse battery")
IMEI_A = "356307042441013"
IMEI_B = "356307042441021"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.original_content))
        return "250 OK"


class LiveEvents:
    """A Socket.IO dashboard client recording every event it receives."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, dict]] = []
        for name in ("position", "alert", "device_status"):
            self.client.on(name, self._recorder(name))

    def _recorder(self, name: str):
        async def record(data):
            self.events.append((name, data))

        return record

    def of(self, name: str) -> list[dict]:
        return [data for event, data in self.events if event == name]


async def eventually(check, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def login(http: httpx.AsyncClient, email: str, password: str) -> dict:
    response = await http.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0 and body["refresh_token"]
    return {"Authorization": f"Bearer {body['access_token']}", "token": body["access_token"]}


def admin_and_smtp(smtp_port: int, **more: str) -> dict[str, str]:
    """The settings of a deployment with the first admin and the test's SMTP server."""
    return {
        "SOLEWATCH_ADMIN_EMAIL": ADMIN[0],
        "SOLEWATCH_ADMIN_PASSWORD": ADMIN[1],
        "SOLEWATCH_SMTP_HOST": "127.0.0.1",
        "SOLEWATCH_SMTP_PORT": str(smtp_port),
        "SOLEWATCH_SMTP_STARTTLS": "false",
        **more,
    }


def auth(headers: dict) -> dict:
    return {"Authorization": headers["Authorization"]}


@pytest.fixture
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture(params=["all-in-one", "distributed"])
async def deployment(request, tmp_path):
    if request.param == "all-in-one":
        running = AllInOne(tmp_path)
    else:
        running = Distributed(tmp_path, request.getfixturevalue("amqp_server"), request.getfixturevalue("redis_server"))
    try:
        yield running
    finally:
        await running.close()


async def test_the_whole_contract(deployment, mailbox):
    box, smtp_port = mailbox
    env = admin_and_smtp(smtp_port, SOLEWATCH_SMTP_FROM="alerts@solewatch.example")
    process = await deployment.start(env)
    base = f"http://127.0.0.1:{process.http_port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            # --- authentication failures and success
            bad = await http.post("/api/v1/auth/token", json={"email": ADMIN[0], "password": "wrong password"})
            assert bad.status_code == 401 and "detail" in bad.json()
            unknown = await http.post("/api/v1/auth/token", json={"email": "nobody@x.example", "password": "whatever1"})
            assert unknown.status_code == 401 and unknown.json() == bad.json()
            assert (await http.get("/api/v1/devices")).status_code == 401
            junk = await http.post(
                "/api/v1/auth/token", content=b"{not json", headers={"content-type": "application/json"}
            )
            assert junk.status_code == 422 and "detail" in junk.json()
            admin = await login(http, *ADMIN)

            # --- a second tenant, created by the platform admin
            created = await http.post(
                "/api/v1/tenants",
                headers=auth(admin),
                json={"name": "Other Co", "admin_email": "boss@other.example", "admin_password": "other secret 123"},
            )
            assert created.status_code == 201, created.text
            other = await login(http, "boss@other.example", "other secret 123")

            # --- devices
            registered = await http.post("/api/v1/devices", headers=auth(admin), json={"imei": IMEI_A, "name": "Alice"})
            assert registered.status_code == 201, registered.text
            token_a = registered.json()["token"]
            assert len(token_a) == 32 and int(token_a, 16) >= 0
            dup = await http.post("/api/v1/devices", headers=auth(other), json={"imei": IMEI_A, "name": "Thief"})
            assert dup.status_code == 409
            bad_imei = await http.post("/api/v1/devices", headers=auth(admin), json={"imei": "12", "name": "x"})
            assert bad_imei.status_code == 422 and "detail" in bad_imei.json()
            registered_b = await http.post("/api/v1/devices", headers=auth(other), json={"imei": IMEI_B, "name": "Bob"})
            assert registered_b.status_code == 201
            token_b = registered_b.json()["token"]

            contact = await http.post(
                "/api/v1/contacts",
                headers=auth(admin),
                json={
                    "name": "Night supervisor",
                    "email": "night@acme.example",
                    "phone": "+33612345678",
                    "kinds": ["sos"],
                },
            )
            assert contact.status_code == 201, contact.text
            bad_phone = await http.post(
                "/api/v1/contacts", headers=auth(admin), json={"name": "x", "phone": "0612345678", "kinds": ["sos"]}
            )
            assert bad_phone.status_code == 422

            # --- live dashboards: one per tenant
            live_a, live_b = LiveEvents(), LiveEvents()
            with pytest.raises(socketio.exceptions.ConnectionError):
                refused = socketio.AsyncClient(reconnection=False)
                await refused.connect(base, auth={"token": "junk"}, socketio_path="socket.io", wait_timeout=5)
            await live_a.client.connect(base, auth={"token": admin["token"]}, socketio_path="socket.io", wait_timeout=5)
            await live_b.client.connect(base, auth={"token": other["token"]}, socketio_path="socket.io", wait_timeout=5)

            # --- the insoles
            device_a = await XSoleTestClient.connect("127.0.0.1", process.listener_port)
            assert (await device_a.login(IMEI_A, bytes.fromhex(token_a))).status == 0
            device_b = await XSoleTestClient.connect("127.0.0.1", process.listener_port)
            assert (await device_b.login(IMEI_B, bytes.fromhex(token_b))).status == 0
            now = int(time.time())
            positions = [
                Position(seq, now - 50 + seq, 436163000 + seq * 100, 70553000, 12, 140, 2705, 9, 8, 87, 1)
                for seq in range(2, 7)
            ]
            await device_a.send(*positions)
            assert await device_a.recv_acks(5) == {seq: 0 for seq in range(2, 7)}
            await device_b.send(Position(2, now, 485000000, 23000000, 30, 0, 0, 7, 10, 50, 1))
            assert await device_b.recv_acks(1) == {2: 0}

            # positions, oldest first, paginated
            items, cursor = [], None
            while True:
                params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
                page = await http.get(f"/api/v1/devices/{IMEI_A}/positions", headers=auth(admin), params=params)
                assert page.status_code == 200, page.text
                items += page.json()["items"]
                cursor = page.json()["next_cursor"]
                if not cursor:
                    break
            assert [round(p["lat"], 5) for p in items] == [round(43.6163 + s * 1e-5, 5) for s in range(2, 7)]
            assert items[0]["ts"].endswith("Z") and items[0]["speed"] == pytest.approx(1.4)
            assert items[0]["course"] == pytest.approx(270.5) and items[0]["buffered"] is False
            # One read of three pages: one audit entry (CONTRACT §5), for admins only.
            reads = await http.get("/api/v1/audit", headers=auth(admin), params={"action": "positions.read"})
            assert reads.status_code == 200, reads.text
            assert [(e["target"]["id"], e["actor"]["label"]) for e in reads.json()["items"]] == [(IMEI_A, ADMIN[0])]

            # history beside positions: heartbeats and activity, oldest first
            await device_a.send(Activity(8, now - 59, 120, 2, 96, 86, 0), Heartbeat(7, now - 60, 86, -71))
            assert await device_a.recv_acks(2) == {7: 0, 8: 0}

            # Distributed, an ACK means published to the ingest queue: the store has them soon after.
            async def history(kind: str) -> list[dict]:
                return (await http.get(f"/api/v1/devices/{IMEI_A}/{kind}", headers=auth(admin))).json()["items"]

            beats = await eventually(lambda: history("heartbeats"), what="heartbeats stored")
            assert beats == [{"ts": iso_utc(now - 60), "battery": 86, "rssi": -71}]
            moves = await eventually(lambda: history("activity"), what="activity stored")
            assert moves == [{"ts": iso_utc(now - 59), "steps": 120, "state": "walking", "cadence": 96, "battery": 86}]
            assert (await http.get(f"/api/v1/devices/{IMEI_A}/activity", headers=auth(other))).status_code == 404

            view = (await http.get(f"/api/v1/devices/{IMEI_A}", headers=auth(admin))).json()
            assert view["online"] is True and view["battery"] == 87 and view["last_seen"]
            assert view["last_position"]["lat"] == pytest.approx(43.6163 + 6e-5)
            assert (await http.get(f"/api/v1/devices/{IMEI_A}", headers=auth(other))).status_code == 404
            listed_b = (await http.get("/api/v1/devices", headers=auth(other))).json()["items"]
            assert [d["imei"] for d in listed_b] == [IMEI_B]

            # The burst's newest position reaches the dashboard (one event per device and commit at least).
            newest = items[-1]
            await eventually(
                lambda: _async(any(p["ts"] == newest["ts"] for p in live_a.of("position"))), what="position events"
            )
            shown = live_a.of("position")[-1]
            assert shown == {"imei": IMEI_A} | {
                key: newest[key] for key in ("ts", "lat", "lon", "speed", "course", "battery")
            }
            assert {p["imei"] for p in live_a.of("position")} == {IMEI_A}
            assert {p["imei"] for p in live_b.of("position")} <= {IMEI_B}

            # --- SOS: one alert, one email; the retransmission changes nothing
            sos = Alarm(7, now, AlarmKind.SOS, 436163500, 70553000, 80, 1)
            await device_a.send(sos)
            assert await device_a.recv_acks(1) == {7: 0}
            alerts = await eventually(lambda: _open_alerts(http, admin), what="the SOS alert")
            await device_a.send(sos)  # retransmitted: same seq, same bytes
            assert await device_a.recv_acks(1) == {7: 0}
            await eventually(lambda: _async(len(box.messages) >= 1), what="the alert email")
            await asyncio.sleep(1.5)
            assert len(await _open_alerts(http, admin)) == 1 and len(box.messages) == 1
            alert = alerts[0]
            assert alert["kind"] == "sos" and alert["imei"] == IMEI_A and alert["status"] == "open"
            assert alert["lat"] == pytest.approx(43.61635)
            assert "night@acme.example" in box.messages[0]["To"] and "SOS" in box.messages[0]["Subject"]
            await eventually(
                lambda: _async(any(a["id"] == alert["id"] for a in live_a.of("alert"))), what="alert event"
            )
            assert not live_b.of("alert")
            assert (await http.get("/api/v1/alerts", headers=auth(other))).json()["items"] == []
            assert (await http.post(f"/api/v1/alerts/{alert['id']}/ack", headers=auth(other))).status_code == 404

            # --- acknowledge: the insole is told (COMMAND alarm-acknowledged)
            acked = await http.post(f"/api/v1/alerts/{alert['id']}/ack", headers=auth(admin))
            assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
            command = await device_a.recv(timeout=10)
            assert isinstance(command, Command) and command.cmd == CommandCode.ALARM_ACKNOWLEDGED
            resolved = await http.post(
                f"/api/v1/alerts/{alert['id']}/resolve",
                headers=auth(admin),
                json={"note": "worker called back, all fine"},
            )
            assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
            again = await http.post(f"/api/v1/alerts/{alert['id']}/ack", headers=auth(admin))
            assert again.status_code == 409 and "detail" in again.json()
            assert (await http.post("/api/v1/alerts/999999/ack", headers=auth(admin))).status_code == 404
            statuses = [a["status"] for a in live_a.of("alert") if a["id"] == alert["id"]]
            await eventually(
                lambda: _async("resolved" in [a["status"] for a in live_a.of("alert")]), what="resolved event"
            )

            # --- a command through the API, from queued to done
            queued = await http.post(
                f"/api/v1/devices/{IMEI_A}/commands", headers=auth(admin), json={"command": "locate-now"}
            )
            assert queued.status_code == 202 and queued.json()["status"] == "queued", queued.text
            command = await device_a.recv(timeout=10)
            assert isinstance(command, Command) and command.cmd == CommandCode.LOCATE_NOW
            answer = CommandResult(20, command.seq, 0)
            await device_a.send(answer)
            assert await device_a.recv_acks(1) == {20: 0}
            await eventually(lambda: _command_status(http, admin, queued.json()["id"], "done"), what="the command done")

            # --- a rotated token: the open connection closes, the old token is refused, the new one logs in
            rotated = await http.post(f"/api/v1/devices/{IMEI_A}/token", headers=auth(admin))
            assert rotated.status_code == 200, rotated.text
            assert await device_a.closed_by_server(timeout=10)
            refused = await XSoleTestClient.connect("127.0.0.1", process.listener_port)
            assert (await refused.login(IMEI_A, bytes.fromhex(token_a))).status == 2
            assert await refused.closed_by_server()
            device_a = await XSoleTestClient.connect("127.0.0.1", process.listener_port)
            assert (await device_a.login(IMEI_A, bytes.fromhex(rotated.json()["token"]))).status == 0
            assert (await http.post(f"/api/v1/devices/{IMEI_A}/token", headers=auth(other))).status_code == 404

            await device_a.close()
            await device_b.close()
            await live_a.client.disconnect()
            await live_b.client.disconnect()
            assert statuses
    finally:
        assert process.terminate() == 0

    # --- everything survives a restart
    process = await deployment.start(env)
    try:
        async with httpx.AsyncClient(base_url=base.rsplit(":", 1)[0] + f":{process.http_port}", timeout=10) as http:
            admin = await login(http, *ADMIN)
            page = await http.get(f"/api/v1/devices/{IMEI_A}/positions", headers=auth(admin))
            assert len(page.json()["items"]) == 5
            resolved = await http.get("/api/v1/alerts", headers=auth(admin), params={"status": "resolved"})
            assert len(resolved.json()["items"]) == 1
            view = (await http.get(f"/api/v1/devices/{IMEI_A}", headers=auth(admin))).json()
            assert view["online"] is False
        assert len(box.messages) == 1  # nothing re-sent after the restart
    finally:
        assert process.terminate() == 0


async def _async(value):
    return value


async def _command_status(http: httpx.AsyncClient, headers: dict, command_id: int, status: str) -> bool:
    response = await http.get(f"/api/v1/devices/{IMEI_A}/commands", headers=auth(headers))
    assert response.status_code == 200, response.text
    return any(c["id"] == command_id and c["status"] == status for c in response.json()["items"])


async def _open_alerts(http: httpx.AsyncClient, headers: dict) -> list[dict]:
    response = await http.get("/api/v1/alerts", headers=auth(headers), params={"status": "open"})
    assert response.status_code == 200, response.text
    return response.json()["items"]


INVITE_LINK = re.compile(r"/#/accept-invite\?token=([A-Za-z0-9_-]+)")


async def test_the_users_flow(deployment, mailbox):
    """CONTRACT §5, the user half, through the path router in the distributed mode: an admin
    invites a supervisor, who accepts from the emailed link and watches live; disabling them
    refuses their token within 5 s and closes their socket."""
    box, smtp_port = mailbox
    env = admin_and_smtp(smtp_port, SOLEWATCH_PUBLIC_URL="https://solewatch.example")
    process = await deployment.start(env)
    base = f"http://127.0.0.1:{process.http_port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            admin = await login(http, *ADMIN)
            invited = await http.post(
                "/api/v1/users",
                headers=auth(admin),
                json={"email": "sam@acme.example", "name": "Sam", "role": "supervisor"},
            )
            assert invited.status_code == 201, invited.text
            assert invited.json()["status"] == "invited" and invited.json()["invitation"]["email_sent"] is True
            await eventually(lambda: _async(any("sam@acme.example" in m["To"] for m in box.messages)), what="invite")
            (email,) = [m for m in box.messages if "sam@acme.example" in m["To"]]
            body = email.get_payload(decode=True).decode()
            assert "https://solewatch.example/#/accept-invite?token=" in body
            token = INVITE_LINK.search(body).group(1)

            accepted = await http.post(
                "/api/v1/auth/accept-invite", json={"token": token, "password": "sam's passphrase"}
            )
            assert accepted.status_code == 200, accepted.text
            again = await http.post("/api/v1/auth/accept-invite", json={"token": token, "password": "sam's passphrase"})
            assert again.status_code == 400 and again.json()["detail"]
            sam = await login(http, "sam@acme.example", "sam's passphrase")
            assert (await http.get("/api/v1/devices", headers=auth(sam))).status_code == 200
            assert (await http.get("/api/v1/users", headers=auth(sam))).status_code == 403
            live = LiveEvents()
            await live.client.connect(base, auth={"token": sam["token"]}, socketio_path="socket.io", wait_timeout=5)

            users = (await http.get("/api/v1/users", headers=auth(admin))).json()["items"]
            sam_id = next(u["id"] for u in users if u["email"] == "sam@acme.example")
            disabled = await http.patch(f"/api/v1/users/{sam_id}", headers=auth(admin), json={"disabled": True})
            assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"

            async def refused() -> bool:
                return (await http.get("/api/v1/devices", headers=auth(sam))).status_code == 401

            await eventually(refused, timeout=5, what="the disabled user's token refused")
            await eventually(lambda: _async(not live.client.connected), timeout=10, what="the socket closed")
            bad = await http.post(
                "/api/v1/auth/token", json={"email": "sam@acme.example", "password": "sam's passphrase"}
            )
            assert bad.status_code == 401

            known = await http.post("/api/v1/auth/password-reset", json={"email": ADMIN[0]})
            unknown = await http.post("/api/v1/auth/password-reset", json={"email": "nobody@acme.example"})
            assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
            assert known.status_code == 202
    finally:
        assert process.terminate() == 0
