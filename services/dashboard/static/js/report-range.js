// The reports' time range: presets and custom dates in the browser's time zone,
// sent to the API as ISO UTC, and cut into the days (or weeks) the chart shows.
import { h } from "./dom.js";

const DAY_BARS_UP_TO = 31; // days; a longer range is charted one bar per week
const LONGEST_DAYS = 365; // the API takes 366 days at most; a day to spare for a clock change

export const PRESETS = [
  ["7d", "Last 7 days"],
  ["30d", "Last 30 days"],
  ["month", "This month"],
];

function midnight(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate());
}

/** Calendar arithmetic in the local zone: a day across a DST change is 23 or 25 hours long. */
function addDays(date, days) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate() + days);
}

/** A preset's range, up to the next minute from `now` (what arrives while one looks counts). */
export function presetRange(name, now = new Date()) {
  const today = midnight(now);
  const until = new Date(Math.ceil(now.getTime() / 60_000) * 60_000 + 60_000);
  if (name === "30d") return { since: addDays(today, -29), until };
  if (name === "month") return { since: new Date(now.getFullYear(), now.getMonth(), 1), until };
  return { since: addDays(today, -6), until };
}

/** From the start of the first day to the end of the last one (`YYYY-MM-DD` values, both included). */
export function customRange(firstDay, lastDay) {
  const [since, last] = [firstDay, lastDay].map((value) => {
    const [year, month, day] = value.split("-").map(Number);
    return new Date(year, month - 1, day);
  });
  if (Number.isNaN(since.getTime()) || Number.isNaN(last.getTime()) || last < since) return null;
  const until = addDays(last, 1);
  const longest = addDays(since, LONGEST_DAYS);
  return until > longest ? { since, until: longest, cut: true } : { since, until };
}

/**
 * The chart's bars: one per local day, or per week from the first day when the range
 * is longer than 31 days. Each: { start, end, label, key } (end excluded, the last one
 * cut at the range's end).
 */
export function bucketsOf({ since, until }) {
  let days = 0;
  for (let day = since; day < until; day = addDays(day, 1)) days += 1;
  const unit = days > DAY_BARS_UP_TO ? "week" : "day";
  const step = unit === "week" ? 7 : 1;
  const buckets = [];
  for (let start = since; start < until; start = addDays(start, step)) {
    const next = addDays(start, step);
    buckets.push({ start, end: next < until ? next : until, key: dayKey(start), label: shortDay(start) });
  }
  return { unit, buckets };
}

/** A range as the API takes it: ISO UTC. */
export function isoRange({ since, until }) {
  return { since: since.toISOString(), until: until.toISOString() };
}

export function dayKey(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function shortDay(date) {
  return date.toLocaleDateString([], { day: "numeric", month: "short" });
}

/** The last day a range covers (its end is excluded). */
export function lastDay({ until }) {
  return new Date(until.getTime() - 1);
}

function longDate(date) {
  return date.toLocaleDateString([], { day: "numeric", month: "short", year: "numeric" });
}

/** "Mar 1, 2026 – Mar 7, 2026": the days a range covers, as the browser's language writes them. */
export function describeRange(range) {
  const last = lastDay(range);
  return dayKey(range.since) === dayKey(last) ? longDate(last) : `${longDate(range.since)} – ${longDate(last)}`;
}

/** The preset buttons and the custom days; `onChange({ since, until })` when a range is chosen. */
export class RangePicker {
  constructor(onChange) {
    this.onChange = onChange;
    this.message = h("p", { class: "form-message", role: "alert", "data-testid": "reports-range-message", hidden: true });
    this.presets = PRESETS.map(([name, label]) => h("button", { type: "button", class: "quiet", "aria-pressed": "false",
      "data-preset": name, "data-testid": `reports-preset-${name}`, text: label, onclick: () => this.choose(name) }));
    this.first = h("input", { type: "date", name: "first", required: true, "data-testid": "reports-first-day" });
    this.last = h("input", { type: "date", name: "last", required: true, "data-testid": "reports-last-day" });
    this.custom = h("form", { class: "report-custom", "data-testid": "reports-custom", novalidate: true,
      onsubmit: (event) => {
        event.preventDefault();
        this._custom();
      } },
    h("label", { class: "field" }, h("span", { text: "From" }), this.first),
    h("label", { class: "field" }, h("span", { text: "To" }), this.last),
    h("button", { type: "submit", class: "quiet", "data-testid": "reports-custom-apply", text: "Show" }));
    this.element = h("div", { class: "report-range no-print" },
      h("div", { class: "presets", role: "group", "aria-label": "Report range" }, this.presets),
      this.custom, this.message);
  }

  choose(name) {
    this._set(presetRange(name), name);
  }

  _custom() {
    const range = customRange(this.first.value, this.last.value);
    let problem = "";
    if (!range) problem = "Choose a first day on or before the last day.";
    else if (range.cut) problem = `A report covers a year at most: this one ends on ${longDate(lastDay(range))}.`;
    this.message.hidden = !problem;
    this.message.textContent = problem;
    this.message.dataset.kind = range ? "wait" : "error";
    if (range) this._set(range, "custom");
  }

  _set(range, preset) {
    for (const button of this.presets) button.setAttribute("aria-pressed", String(button.dataset.preset === preset));
    this.first.value = dayKey(range.since);
    this.last.value = dayKey(lastDay(range));
    this.onChange(range);
  }
}
