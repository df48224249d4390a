"""The listener's Prometheus metrics (one definition, imported where counted)."""

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from shared.protocols.xsole import AckStatus

connections_open = Gauge("listener_connections_open", "Device connections currently open")
connections_refused = Counter("listener_connections_refused_total", "Connections closed at once: listener full")
logins = Counter("listener_logins_total", "Logins answered, by the protocol they came in", ["protocol", "result"])
logins_held = Counter(
    "listener_logins_held_total", "Refused logins whose connection was held before closing (repeated wrong tokens)"
)
frames_stored = Counter("listener_frames_stored_total", "Frames made durable and acknowledged with status 0")
frames_rejected = Counter(
    "listener_frames_rejected_total",
    "Frames refused for invalid values (XSole: ACK status 1; tracker protocols: dropped, packet acknowledged)",
    ["protocol"],
)
bad_frames = Counter(
    "listener_bad_frames_total", "Frames or packets dropped for a bad checksum, version or form", ["protocol"]
)
connections_closed = Counter("listener_connections_closed_total", "Connections closed by the listener", ["reason"])
acks_sent = Counter("listener_acks_sent_total", "ACK frames sent", ["status"])
commands_sent = Counter("listener_commands_sent_total", "COMMAND frames sent to devices")
commits_failed = Counter(
    "listener_commits_failed_total",
    "Group commits that failed (their frames got ACK 4); the log has one line per outage",
)
pending_frames = Gauge("listener_pending_frames", "Frames waiting for durability")
commit_frames = Histogram(
    "listener_commit_frames",
    "Frames per group commit",
    buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384),
)
commit_seconds = Histogram(
    "listener_commit_seconds",
    "Duration of one group commit",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def stored_frames() -> int:
    """`frames_stored` so far, read through the registry's public API (a counter has no public getter)."""
    return int(REGISTRY.get_sample_value("listener_frames_stored_total") or 0)


ACKS_BY_STATUS = {status: acks_sent.labels(status.name.lower()) for status in AckStatus}
# Valid frames received, counted once per group commit by the committer: a
# plain dict of ints, turned into a Prometheus counter only when /metrics is
# scraped (a Counter's lock per frame cost more than parsing the frame's header).
FRAMES_RECEIVED: dict[str, int] = {}


class _FramesReceived(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("listener_frames_received", "Valid device frames received", labels=["type"])
        for frame_type, count in sorted(FRAMES_RECEIVED.items()):
            family.add_metric([frame_type], count)
        yield family


REGISTRY.register(_FramesReceived())
