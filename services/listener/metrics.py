"""The listener's Prometheus metrics (one definition, imported where counted)."""

from prometheus_client import Counter, Gauge, Histogram

from shared.protocols.xsole import AckStatus

connections_open = Gauge("listener_connections_open", "Device connections currently open")
connections_refused = Counter("listener_connections_refused_total", "Connections closed at once: listener full")
logins = Counter("listener_logins_total", "LOGIN frames answered", ["result"])
frames_received = Counter("listener_frames_received_total", "Valid device frames received", ["type"])
frames_stored = Counter("listener_frames_stored_total", "Frames made durable and acknowledged with status 0")
frames_rejected = Counter("listener_frames_rejected_total", "Frames refused with ACK status 1 (invalid values)")
bad_frames = Counter("listener_bad_frames_total", "Frames dropped for a bad CRC or version")
connections_closed = Counter("listener_connections_closed_total", "Connections closed by the listener", ["reason"])
acks_sent = Counter("listener_acks_sent_total", "ACK frames sent", ["status"])
commands_sent = Counter("listener_commands_sent_total", "COMMAND frames sent to devices")
pending_frames = Gauge("listener_pending_frames", "Frames waiting for durability")
commit_frames = Histogram(
    "listener_commit_frames", "Frames per group commit", buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384),
)
commit_seconds = Histogram(
    "listener_commit_seconds", "Duration of one group commit",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ACKS_BY_STATUS = {status: acks_sent.labels(status.name.lower()) for status in AckStatus}
FRAMES_BY_TYPE: dict[type, Counter] = {}


def frames_of(event_type: type) -> Counter:
    counter = FRAMES_BY_TYPE.get(event_type)
    if counter is None:
        counter = FRAMES_BY_TYPE[event_type] = frames_received.labels(event_type.__name__.lower())
    return counter
