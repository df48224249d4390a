// The team's response times over the report's range (GET /api/v1/reports/alerts,
// CONTRACT §9): alerts by kind and status, time to acknowledge, escalations, and
// the acknowledgements slower than the threshold, listed.
import { KIND_LABELS, clock, duration, h } from "./dom.js";
import { messageLine, say } from "./forms.js";
import { isoRange } from "./report-range.js";

const STATUSES = ["open", "acknowledged", "resolved"];

export class ResponseTimesReport {
  /** context: api, limit (the panel's request limiter), saveCsv(button, line, path, name), explain(error, what). */
  constructor(root, context) {
    this.context = context;
    this.generation = 0;
    this.message = messageLine("report-alerts-message");
    this.body = h("div", { class: "stack", "data-testid": "report-alerts-body" });
    this.csv = h("button", { type: "button", class: "quiet no-print", "data-testid": "report-alerts-csv",
      text: "Download CSV", disabled: true,
      onclick: () => this.context.saveCsv(this.csv, this.message, "api/v1/reports/alerts", "alerts-report") });
    root.append(h("div", { class: "report-section-head" }, h("h3", { text: "Response times" }), this.csv),
      this.message, this.body);
  }

  async load(range) {
    const generation = ++this.generation;
    this.csv.disabled = true;
    say(this.message, "");
    this.body.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
    try {
      const report = await this.context.limit.run(() => this.context.api.get("api/v1/reports/alerts",
        isoRange(range)));
      if (generation !== this.generation) return;
      this.body.replaceChildren(...this._render(report));
      this.csv.disabled = false;
    } catch (error) {
      if (generation !== this.generation) return;
      this.body.replaceChildren();
      say(this.message, this.context.explain(error, "load the response times"));
    }
  }

  reset() {
    this.generation += 1;
    this.body.replaceChildren();
    say(this.message, "");
    this.csv.disabled = true;
  }

  _render(report) {
    const ack = report.time_to_ack_s ?? {};
    const figure = (testid, label, value, note = null) => h("div", { class: "figure", "data-testid": testid },
      h("dt", { text: label }),
      h("dd", {}, h("strong", { text: value }), note ? h("span", { class: "muted", text: ` ${note}` }) : null));
    const figures = h("dl", { class: "figures" },
      figure("report-alerts-total", "Alerts", String(report.total)),
      figure("report-alerts-acknowledged", "Acknowledged", String(report.acknowledged ?? 0),
        report.unacknowledged ? `(${report.unacknowledged} not)` : null),
      figure("report-ack-median", "Median time to acknowledge", duration(ack.median)),
      figure("report-ack-p90", "90 % acknowledged within", duration(ack.p90)),
      figure("report-ack-max", "Longest", duration(ack.max)),
      figure("report-escalations", "Escalations", String(report.escalations ?? 0),
        report.escalated_alerts ? `(${report.escalated_alerts} alert${report.escalated_alerts === 1 ? "" : "s"})` : null));
    return [figures, this._byKind(report), ...this._slow(report)];
  }

  _byKind(report) {
    const kinds = Object.entries(report.by_kind ?? {}).sort((a, b) => b[1].total - a[1].total);
    if (kinds.length === 0) return h("p", { class: "empty", "data-testid": "report-alerts-none", text: "No alert in this range." });
    const rows = kinds.map(([kind, counts]) => h("tr", { "data-testid": `report-alerts-kind-${kind}` },
      h("th", { scope: "row" }, h("span", { class: `kind kind-${kind}`, text: KIND_LABELS[kind] ?? kind })),
      h("td", { "data-field": "total", text: String(counts.total) }),
      STATUSES.map((status) => h("td", { "data-field": status, text: String(counts[status] ?? 0) }))));
    const statuses = report.by_status ?? {};
    const totals = h("tr", { class: "totals" }, h("th", { scope: "row", text: "All" }),
      h("td", { text: String(report.total) }), STATUSES.map((status) => h("td", { text: String(statuses[status] ?? 0) })));
    return h("div", { class: "table-scroll" }, h("table", { class: "report-table", "data-testid": "report-alerts-by-kind" },
      h("caption", { class: "visually-hidden", text: "Alerts by kind and status" }),
      h("thead", {}, h("tr", {}, ["Kind", "Total", "Open", "Acknowledged", "Resolved"].map((label) =>
        h("th", { scope: "col", text: label })))),
      h("tbody", {}, rows, totals)));
  }

  _slow(report) {
    const threshold = duration(report.slow_threshold_s ?? 300);
    const title = h("h4", { text: `Acknowledged after more than ${threshold}` });
    const slow = report.slow ?? [];
    if (slow.length === 0) {
      return [title, h("p", { class: "empty", "data-testid": "report-slow-none",
        text: "None: every acknowledgement was quicker." })];
    }
    const rows = slow.map((alert) => h("li", { class: "admin-row", "data-testid": `report-slow-${alert.id}` },
      h("div", { class: "admin-row-head" },
        h("span", {}, h("span", { class: `kind kind-${alert.kind}`, text: KIND_LABELS[alert.kind] ?? alert.kind }),
          ` ${alert.name ?? alert.imei}`),
        h("strong", { "data-field": "time_to_ack", text: duration(alert.time_to_ack_s) })),
      h("span", { class: "muted", text: `raised ${clock(alert.raised_at ?? alert.ts)}, acknowledged ` +
        `${clock(alert.acknowledged_at)}${alert.acknowledged_by ? ` by ${alert.acknowledged_by}` : ""}` })));
    return [title, h("ul", { class: "rows", "data-testid": "report-slow-list" }, rows)];
  }
}
