"""compose/haproxy.cfg run by the real HAProxy: the harness lives in bench/haproxy.py, which
bench/failover.py uses too (the benches cannot import tests/)."""

from bench.haproxy import (
    COMPOSE_FILE,
    HAPROXY_CFG,
    LocalProxy,
    Replica,
    StandInDns,
    haproxy_installed,
    local_config,
    start_proxy,
    with_mounts,
)

__all__ = [
    "COMPOSE_FILE",
    "HAPROXY_CFG",
    "LocalProxy",
    "Replica",
    "StandInDns",
    "haproxy_installed",
    "local_config",
    "start_proxy",
    "with_mounts",
]
