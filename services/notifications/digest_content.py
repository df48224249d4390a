"""What the weekly digest email says (docs/reports.md, "Weekly digest"): figures in, text and HTML out.

No I/O: services/notifications/digest.py reads the store and sends. The
figures are the alerts report's (shared/reports/response_times.py) over the
seven days before the digest is due, so the email and the dashboard's Reports
tab agree for the same range.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.reports.response_times import alerts_report, slowest
from shared.store.alerts import Alert

SLOWEST_SHOWN = 5
SILENT_AFTER_S = 24 * 3600  # a device with no frame for longer than this is listed as silent
_WHY = (
    "You get this email because you asked for solewatch's weekly digest;"
    " PUT /api/v1/auth/me/digest with weekly_digest false stops it."
)


@dataclass(frozen=True, slots=True)
class SilentDevice:
    imei: str
    name: str
    last_seen: float | None  # None: never connected since it was registered


@dataclass(frozen=True, slots=True)
class Digest:
    tenant_name: str
    week: str  # ISO week of the sending, `2026-W10`
    since: float
    until: float
    total: int
    by_kind: dict[str, int]
    time_to_ack_s: dict[str, float | None]
    unacknowledged: int
    slowest: list[dict[str, Any]]  # the SLOWEST_SHOWN slowest acknowledgements, as in the report's `slow`
    silent: list[SilentDevice]


def build_digest(
    alerts: Sequence[Alert],
    names: Mapping[int, str],
    silent: Sequence[SilentDevice],
    *,
    tenant_name: str,
    week: str,
    since: float,
    until: float,
) -> Digest:
    """The digest of the alerts raised in [since, until) and of the devices silent at `until`."""
    report = alerts_report(alerts, {}, names, since=since, until=until)
    return Digest(
        tenant_name=tenant_name,
        week=week,
        since=since,
        until=until,
        total=report["total"],
        by_kind={kind: counts["total"] for kind, counts in report["by_kind"].items()},
        time_to_ack_s=report["time_to_ack_s"],
        unacknowledged=report["unacknowledged"],
        slowest=slowest(alerts, names, over_s=None, limit=SLOWEST_SHOWN),
        silent=sorted(silent, key=lambda d: (d.last_seen or 0.0, d.imei)),
    )


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%a %d %b %Y")


def _moment(t: float | None) -> str:
    return "never" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso_moment(iso: str) -> str:
    return _moment(datetime.fromisoformat(iso).timestamp())


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{value:.1f} s"


def _kind(kind: str) -> str:
    return kind.replace("_", " ")


def subject(digest: Digest) -> str:
    return f"[solewatch] Weekly digest {digest.week} — {digest.tenant_name}: {digest.total} alerts"


def _worker(line: Mapping[str, Any]) -> str:
    return f"{line['name']} ({line['imei']})" if line["name"] else str(line["imei"])


def text(digest: Digest) -> str:
    ack = digest.time_to_ack_s
    lines = [
        f"solewatch weekly digest — {digest.tenant_name}",
        f"From {_day(digest.since)} to {_day(digest.until)} (UTC)",
        "",
        f"Alerts: {digest.total}" + (f" ({digest.unacknowledged} never acknowledged)" if digest.total else ""),
    ]
    lines += [f"  {_kind(kind)}: {count}" for kind, count in digest.by_kind.items()]
    lines += [
        "",
        "Time to acknowledge: "
        f"median {_seconds(ack['median'])}, 90th percentile {_seconds(ack['p90'])}, longest {_seconds(ack['max'])}",
        "",
        "Slowest acknowledgements:" if digest.slowest else "Slowest acknowledgements: none acknowledged this week",
    ]
    lines += [
        f"  {_seconds(line['time_to_ack_s'])} — {_kind(line['kind'])}, {_worker(line)},"
        f" raised {_iso_moment(line['raised_at'])}, acknowledged by {line['acknowledged_by'] or 'unknown'}"
        for line in digest.slowest
    ]
    lines += ["", "Silent devices (no frame for more than 24 h):" if digest.silent else "Silent devices: none"]
    lines += [f"  {d.name} ({d.imei}) — last seen {_moment(d.last_seen)}" for d in digest.silent]
    lines += ["", f"{_WHY}"]
    return "\n".join(lines) + "\n"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    e = html.escape
    head = "".join(f'<th style="text-align: left; padding: 2px 8px">{e(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="padding: 2px 8px">{e(cell)}</td>' for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def html_body(digest: Digest) -> str:
    e = html.escape
    ack = digest.time_to_ack_s
    kinds = _table(["Kind", "Alerts"], [[_kind(kind), str(n)] for kind, n in digest.by_kind.items()])
    slow = _table(
        ["Time to acknowledge", "Kind", "Worker", "Raised", "Acknowledged by"],
        [
            [
                _seconds(line["time_to_ack_s"]),
                _kind(line["kind"]),
                _worker(line),
                _iso_moment(line["raised_at"]),
                line["acknowledged_by"] or "unknown",
            ]
            for line in digest.slowest
        ],
    )
    silent = _table(["Device", "IMEI", "Last seen"], [[d.name, d.imei, _moment(d.last_seen)] for d in digest.silent])
    never = f" ({digest.unacknowledged} never acknowledged)" if digest.total else ""
    return (
        '<!DOCTYPE html><html><body style="font-family: sans-serif">'
        f"<h1>Weekly digest — {e(digest.tenant_name)}</h1>"
        f"<p>From {e(_day(digest.since))} to {e(_day(digest.until))} (UTC)</p>"
        f"<h2>Alerts: {digest.total}{e(never)}</h2>{kinds if digest.by_kind else ''}"
        f"<h2>Time to acknowledge</h2><p>median {e(_seconds(ack['median']))},"
        f" 90th percentile {e(_seconds(ack['p90']))}, longest {e(_seconds(ack['max']))}</p>"
        f"<h2>Slowest acknowledgements</h2>{slow if digest.slowest else '<p>None acknowledged this week.</p>'}"
        f"<h2>Silent devices (no frame for more than 24 h)</h2>{silent if digest.silent else '<p>None.</p>'}"
        f'<p style="color: #666">{e(_WHY)}</p>'
        "</body></html>"
    )
