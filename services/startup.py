"""What `solewatch run` makes sure of before it changes anything, and start-up failures as one sentence.

The all-in-one process starts its components in order; the first admin (and
its password, shown once) comes after every listening socket is bound. Before
even opening the store, `Preflight` claims the data directory for this process
and checks that the ports are free, so the usual mistakes (a second `solewatch
run`, a port taken by another program, a data directory it cannot write) stop
the process with one plain sentence and nothing created.
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import os
import socket
import sqlite3
from pathlib import Path

from shared.config import Settings, SettingsError
from shared.protocols.registry import CodecMissing

LOCK_FILE = "solewatch.lock"


class StartupError(Exception):
    """Why the process cannot start, said as one sentence for the person who started it."""


class Preflight:
    """The first component of `solewatch run`: holds the data directory's lock for the process's life."""

    name = "preflight"

    def __init__(self, settings: Settings):
        self._settings = settings
        self._lock_fd: int | None = None

    async def start(self) -> None:
        from services.authn.tokens import signing_secret

        self._lock_fd = lock_data_dir(self._settings.data_dir)
        check_ports_free(self._settings)
        signing_secret(self._settings)  # a settings mistake stops here, before anything is bound or created

    async def drain(self) -> None:
        pass

    async def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock; the file stays, empty of meaning
            self._lock_fd = None

    async def reload(self, settings: Settings) -> None:
        pass  # the data directory and ports need a restart to change

    async def check_ready(self) -> str | None:
        return None


def lock_data_dir(data_dir: Path) -> int:
    """Create the data directory if needed and lock it for this process; returns the lock's descriptor.

    SQLite would let two processes share the database, but each `solewatch run`
    keeps state about it in memory (the newest frame per device, the outbox), so
    a second one is refused. The lock is an flock: the kernel drops it when the
    process dies, however it dies, so a crash never leaves a stale lock behind.
    """
    where = os.path.abspath(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise StartupError(
                f"cannot create the data directory {where}: permission denied; create it, "
                "or set SOLEWATCH_DATA_DIR to a directory this user can write"
            ) from exc
        raise StartupError(_data_dir_problem(where, exc)) from exc
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StartupError(_data_dir_problem(where, exc)) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise StartupError(
            f"another solewatch run{f' (pid {holder})' if holder.isdigit() else ''} is already using the data "
            f"directory {where}; stop it, or set SOLEWATCH_DATA_DIR to another directory"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    if not os.access(data_dir, os.W_OK | os.X_OK):  # the lock file may exist from before, the database may not
        os.close(fd)
        raise StartupError(_data_dir_problem(where, PermissionError(errno.EACCES, "not writable")))
    return fd


def _data_dir_problem(where: str, exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return (
            f"the data directory {where} is on a read-only file system; set SOLEWATCH_DATA_DIR to a writable directory"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"the data directory {where} is not writable by user {_user()}; fix its permissions, "
            "or set SOLEWATCH_DATA_DIR to a directory this user can write"
        )
    if exc.errno == errno.ENOSPC:
        return f"no space left for the data directory {where}; free some, or set SOLEWATCH_DATA_DIR elsewhere"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"the data directory {where} is not a directory; set SOLEWATCH_DATA_DIR to a directory"
    return f"cannot use the data directory {where}: {exc.strerror or exc}"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def check_ports_free(settings: Settings) -> None:
    """Raise StartupError when a port solewatch listens on is taken (port 0: any free one, not checked).

    Bound the way the servers bind (SO_REUSEADDR, every address the bind name
    resolves to), then released: only a socket another program listens on makes
    it fail, not the leftovers of a previous run.
    """
    ports = (
        ("SOLEWATCH_HTTP_PORT", "the HTTP API", settings.http_port),
        ("SOLEWATCH_LISTENER_PORT", "the devices' XSole TCP", settings.listener_port),
        *(
            (f"SOLEWATCH_{protocol.upper()}_PORT", f"the {protocol} trackers' TCP", port)
            for protocol, port in settings.tracker_ports().items()
        ),
    )
    for variable, purpose, port in ports:
        if port:
            _check_port(settings.bind, port, variable, purpose)


def _check_port(host: str, port: int, variable: str, purpose: str) -> None:
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host!r} (SOLEWATCH_BIND): {exc.strerror}") from exc
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise StartupError(_port_problem(host, port, variable, purpose, exc)) from exc


def _port_problem(host: str, port: int, variable: str, purpose: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} ({purpose}) is already in use by another program; stop it, "
            f"or set {variable} to a free port"
        )
    if exc.errno == errno.EACCES:
        return f"port {port} ({purpose}) needs privileges this user lacks; set {variable} to a port above 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: no network interface of this machine has that address; fix SOLEWATCH_BIND"
    return f"cannot listen on {host} port {port} ({purpose}): {exc.strerror or exc}"


def startup_failure(exc: BaseException, settings: Settings) -> str:
    """One sentence for an exception that stopped the process while it started."""
    if isinstance(exc, StartupError | CodecMissing):
        return str(exc)
    if isinstance(exc, SettingsError):
        return f"invalid settings: {exc}"
    if isinstance(exc, sqlite3.OperationalError):
        if "locked" in str(exc):
            return (
                f"the database {os.path.abspath(settings.sqlite_path)} is locked by another process; "
                "stop it, or set SOLEWATCH_DATA_DIR to another directory"
            )
        return f"cannot use the database {os.path.abspath(settings.sqlite_path)}: {exc}"
    if isinstance(exc, OSError):
        if exc.errno == errno.EADDRINUSE:  # taken between the preflight check and the real bind
            return f"a port solewatch listens on was taken meanwhile by another program: {exc}"
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
            return _data_dir_problem(os.path.abspath(settings.data_dir), exc)
    return f"could not start: {exc!r} (SOLEWATCH_LOG_LEVEL=debug shows where)"
