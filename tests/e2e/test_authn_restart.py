"""Sessions and login throttling outlive a restart of `solewatch run` (issue 12, item 2).

A logged-out access token stays refused, a refresh token still works and a
login delay still holds after the process is killed and started again on the
same data directory, as they do on the distributed mode's Redis.
"""

from __future__ import annotations

import httpx

from tests.helpers.process import SolewatchProcess

ADMIN = {"email": "admin@example.com", "password": "a long passphrase"}
ENV = {
    "SOLEWATCH_ADMIN_EMAIL": ADMIN["email"],
    "SOLEWATCH_ADMIN_PASSWORD": ADMIN["password"],
    # One free failure, then a delay long enough to span the restart.
    "SOLEWATCH_LOGIN_FREE_FAILURES": "1",
    "SOLEWATCH_LOGIN_FIRST_DELAY": "600",
}


def login(api: httpx.Client, password: str = ADMIN["password"]) -> httpx.Response:
    return api.post("/api/v1/auth/token", json={"email": ADMIN["email"], "password": password})


def me(api: httpx.Client, access_token: str) -> int:
    return api.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"}).status_code


def test_logout_refresh_tokens_and_login_delays_survive_a_restart(tmp_path):
    data_dir = tmp_path / "data"
    first = SolewatchProcess(data_dir, "run", log_path=tmp_path / "run1.log", env=ENV)
    try:
        first.start()
        with httpx.Client(base_url=f"http://127.0.0.1:{first.http_port}", timeout=10) as api:
            signed_out = login(api).json()
            assert (
                api.post(
                    "/api/v1/auth/logout", headers={"Authorization": f"Bearer {signed_out['access_token']}"}
                ).status_code
                == 204
            )
            assert me(api, signed_out["access_token"]) == 401
            kept = login(api).json()
            assert [login(api, "wrong guess").status_code for _ in range(2)] == [401, 401]
            assert login(api).status_code == 429  # the delay the second failure earned
        first.kill()  # no clean shutdown: what was answered must already be on disk
    finally:
        first.stop_quietly()

    second = SolewatchProcess(data_dir, "run", log_path=tmp_path / "run2.log", env=ENV)
    try:
        second.start()
        with httpx.Client(base_url=f"http://127.0.0.1:{second.http_port}", timeout=10) as api:
            assert me(api, signed_out["access_token"]) == 401  # logged out stays logged out
            assert me(api, kept["access_token"]) == 200
            refreshed = api.post("/api/v1/auth/refresh", json={"refresh_token": kept["refresh_token"]})
            assert refreshed.status_code == 200, refreshed.text  # nobody was signed out by the restart
            assert me(api, refreshed.json()["access_token"]) == 200
            throttled = login(api)
            assert throttled.status_code == 429, throttled.text  # the delay still holds
            assert 0 < int(throttled.headers["retry-after"]) <= 600
        assert second.terminate() == 0
    finally:
        second.stop_quietly()
