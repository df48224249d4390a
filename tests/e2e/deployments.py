"""The two ways to run solewatch, started as real processes for the e2e contract test.

Both offer one HTTP address and one device TCP port, as a user sees them:
the all-in-one process itself, or the distributed services behind a path
router (REST, auth, Socket.IO with sticky sessions) and a round-robin TCP
proxy in front of two listener processes, as compose/'s reverse proxy does.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers.http_router import HttpRouter
from tests.helpers.process import SolewatchProcess
from tests.helpers.tcp_proxy import TcpProxy

# Services and how many processes of each; authn first: it creates the first admin.
DISTRIBUTED_LAYOUT = (("authn", 1), ("listener", 2), ("api", 1), ("wss", 2), ("notifications", 1))
JWT_SECRET = "e2e-secret-of-the-distributed-deployment-0123456789"


class AllInOne:
    def __init__(self, tmp_path: Path):
        self._tmp_path = tmp_path
        self._process: SolewatchProcess | None = None
        self._runs = 0

    async def start(self, env: dict[str, str]) -> AllInOne:
        self._runs += 1
        self._process = SolewatchProcess(
            self._tmp_path / "data", "run", log_path=self._tmp_path / f"run{self._runs}.log", env=env
        ).start()
        return self

    @property
    def http_port(self) -> int:
        assert self._process is not None
        return self._process.http_port

    @property
    def listener_port(self) -> int:
        assert self._process is not None
        return self._process.listener_port

    def terminate(self) -> int:
        assert self._process is not None
        return self._process.terminate()

    async def close(self) -> None:
        if self._process is not None:
            self._process.stop_quietly()


class Distributed:
    def __init__(self, tmp_path: Path, amqp_url: str, redis_url: str):
        self._tmp_path = tmp_path
        # A Redis database of its own on the session's shared server.
        self._backends = {
            "SOLEWATCH_AMQP_URL": amqp_url,
            "SOLEWATCH_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/1",
            "SOLEWATCH_JWT_SECRET": JWT_SECRET,
        }
        self.processes: dict[str, list[SolewatchProcess]] = {}
        self._router: HttpRouter | None = None
        self._devices: TcpProxy | None = None
        self._runs = 0

    async def start(self, env: dict[str, str]) -> Distributed:
        self._runs += 1
        self.processes = {}
        for service, count in DISTRIBUTED_LAYOUT:
            for index in range(count):
                log_path = self._tmp_path / f"{service}{index}-run{self._runs}.log"
                process = SolewatchProcess(
                    self._tmp_path / "data", service, log_path=log_path, env={**env, **self._backends}
                )
                self.processes.setdefault(service, []).append(process)
        # authn alone first (it creates the store and the first admin), then the others side by side.
        first, *others = [process for group in self.processes.values() for process in group]
        first.start(timeout=40)
        for process in others:
            process.launch()
        for process in others:
            process.wait_ready(timeout=40)
        self._router = HttpRouter(
            [
                ("/api/v1/auth/", self._bases("authn")),
                ("/api/v1/tenants", self._bases("authn")),
                ("/api/v1/api-keys", self._bases("authn")),
                ("/api/v1/users", self._bases("authn")),
                ("/socket.io/", self._bases("wss")),
                ("/", self._bases("api")),
            ]
        )
        await self._router.start()
        self._devices = TcpProxy(*(("127.0.0.1", p.listener_port) for p in self.processes["listener"]))
        await self._devices.start()
        return self

    def _bases(self, service: str) -> list[str]:
        return [f"http://127.0.0.1:{p.http_port}" for p in self.processes[service]]

    @property
    def http_port(self) -> int:
        assert self._router is not None
        return self._router.port

    @property
    def listener_port(self) -> int:
        assert self._devices is not None
        return self._devices.port

    def terminate(self) -> int:
        """Stop every process (SIGTERM); 0 when each exited cleanly, else the first other status."""
        codes = [process.terminate() for group in reversed(self.processes.values()) for process in group]
        return next((code for code in codes if code != 0), 0)

    async def close(self) -> None:
        for group in self.processes.values():
            for process in group:
                process.stop_quietly()
        if self._router is not None:
            await self._router.close()
        if self._devices is not None:
            await self._devices.close()
