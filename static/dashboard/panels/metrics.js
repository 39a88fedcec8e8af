/* The request metrics: totals, per node and per model, and the latency chart of
 * the window as the server cut it into buckets (/api/metrics `series`). */

import { refresher } from "../api.js";
import { chartFrame, stamp } from "../chart.js";
import { $, el, fmtMs, fmtPct, fmtSpan, num, setText, showRows, stat, svg, watchInView } from "../dom.js";
import { snap } from "../state.js";

// Told apart by name, dash pattern and marker shape as well as by colour.
const PERCENTILES = [
  { key: "p50", name: "p50 (median)", marker: "circle" },
  { key: "p95", name: "p95", marker: "square" },
  { key: "p99", name: "p99", marker: "diamond" },
];

let shown = snap.metrics || null; // the answer of /api/metrics on the page
// The chart is drawn to its box's width, which needs the page laid out: out of
// view it waits, and is drawn when the reader scrolls to it.
let chartView = { inView: true };
let chartBehind = false;

/** Show one answer of /api/metrics: its numbers, its breakdowns, its series. */
function showMetrics(data) {
  shown = data;
  const totals = (data && data.totals) || {};
  const latency = totals.latency_ms || {};
  $("metrics-totals").replaceChildren(
    stat("Requests", totals.requests === undefined ? "—" : String(totals.requests)),
    stat("Success rate", fmtPct(totals.success_rate)),
    stat("p50", fmtMs(latency.p50)),
    stat("p95", fmtMs(latency.p95)),
    stat("p99", fmtMs(latency.p99)),
    stat("Tokens/s", num(totals.tokens_per_second) === null ? "—" : totals.tokens_per_second.toFixed(1)),
  );
  // A window longer than an hour comes from rollups: say its percentiles are
  // estimates, and from when it counts (its first whole minute or hour).
  const notes = [];
  if (data && data.note) notes.push(data.note);
  if (data && data.answered_from === "rollups") {
    notes.push("percentiles " + (data.percentiles || "estimated") + ", since " + stamp(data.since, true));
  }
  setText($("metrics-note"), notes.join(" · "));
  showBreakdown($("metrics-nodes").tBodies[0], (data && data.per_node) || [], "node");
  showBreakdown($("metrics-models").tBodies[0], (data && data.per_model) || [], "model");
  chartBehind = !chartView.inView;
  if (!chartBehind) renderChart(data);
}

function showBreakdown(tbody, rows, label) {
  showRows(tbody, rows.map((row) => {
    const l = row.latency_ms || {};
    return el("tr", null, el("td", { text: row[label] }), el("td", { className: "num", text: row.requests }),
      el("td", { className: "num", text: fmtPct(row.success_rate) }), el("td", { className: "num", text: fmtMs(l.p50) }),
      el("td", { className: "num", text: fmtMs(l.p95) }), el("td", { className: "num", text: fmtMs(l.p99) }));
  }), "No requests reported in this window.", 6);
}

function marker(shape, x, y) {
  if (shape === "square") return svg("rect", { class: "marker", x: x - 2.5, y: y - 2.5, width: 5, height: 5 });
  if (shape === "diamond") {
    return svg("path", { class: "marker", d: "M" + x + " " + (y - 3.5) + " L" + (x + 3.5) + " " + y + " L" + x + " " +
      (y + 3.5) + " L" + (x - 3.5) + " " + y + " Z" });
  }
  return svg("circle", { class: "marker", cx: x, cy: y, r: 2.8 });
}

/** Draw the window's series as the server cut it: a gap where a bucket had no requests. */
function renderChart(data) {
  const box = $("metrics-chart");
  const series = (Array.isArray(data && data.series) ? data.series : []).filter(
    (b) => b && num(b.start) !== null && num(b.end) !== null);
  const { root, label, width, height, left, right, bottom, top } = chartFrame(box, 170);
  const latency = (bucket, key) => num((bucket.latency_ms || {})[key]);
  const values = series.flatMap((b) => PERCENTILES.map((p) => latency(b, p.key))).filter((v) => v !== null);
  const option = $("metrics-window").selectedOptions[0];
  const windowText = option ? option.textContent : "";
  if (!values.length) {
    label("No requests reported in this window", { x: left + 10, y: height / 2 });
    box.replaceChildren(root);
    box.setAttribute("aria-label", "Latency percentiles over the last " + windowText + ": no requests reported");
    return;
  }
  const max = Math.max(...values) * 1.1 || 1;
  const t0 = num(data.since) !== null ? data.since : series[0].start;
  const t1 = num(data.until) !== null ? data.until : series[series.length - 1].end;
  const days = t1 - t0 > 86400;
  const x = (t) => left + ((t - t0) / (t1 - t0 || 1)) * (width - left - right);
  const y = (v) => height - bottom - (v / max) * (height - bottom - top);
  for (const p of PERCENTILES) {
    const group = svg("g", { class: "series line-" + p.key, "data-series": p.key });
    const path = svg("path", { class: "line", d: "" });
    group.append(path);
    let d = "";
    let open = false;
    for (const bucket of series) {
      const value = latency(bucket, p.key);
      if (value === null) {
        open = false; // no requests: a gap, not a drop to 0
        continue;
      }
      const px = Number(x((bucket.start + bucket.end) / 2).toFixed(1));
      const py = Number(y(value).toFixed(1));
      d += (open ? " L" : " M") + px + " " + py;
      open = true;
      const point = marker(p.marker, px, py);
      const title = svg("title");
      title.textContent = stamp(bucket.start, days) + "–" + stamp(bucket.end, days) + " · " + p.key + " " + fmtMs(value) +
        " · " + bucket.requests + (bucket.requests === 1 ? " request" : " requests") +
        (bucket.errors ? ", " + bucket.errors + " failed" : "");
      point.append(title);
      group.append(point);
    }
    path.setAttribute("d", d.trim());
    root.append(group);
  }
  label(fmtMs(max), { x: 2, y: top + 10 });
  label("0", { x: 2, y: height - bottom });
  label(stamp(t0, days), { x: left, y: height - 4 });
  label(stamp(t1, days), { x: width - right, y: height - 4, "text-anchor": "end" });
  box.replaceChildren(root);
  const totals = (data.totals && data.totals.latency_ms) || {};
  box.setAttribute("aria-label", "Latency percentiles over the last " + windowText + ", in " + series.length +
    " steps of " + fmtSpan(data.bucket_seconds) + ": p50 " + fmtMs(totals.p50) + ", p95 " + fmtMs(totals.p95) +
    ", p99 " + fmtMs(totals.p99) + " over the window");
}

const windowPath = () => "/api/metrics?window=" + encodeURIComponent($("metrics-window").value);

/** Read the chosen window again; an answer for a window no longer chosen is dropped. */
export const refreshMetrics = refresher(windowPath, (data, path) => {
  if (windowPath() === path) showMetrics(data);
}, 2000);

/** The server's metrics clock (a sample every few seconds): re-read a window
 * that moved on, or that a newer request than it holds would change. */
export function onMetricsTick(tick) {
  const at = num(tick.at);
  if (!shown || at === null) return;
  const until = num(shown.until) || 0;
  const newest = num(tick.last_request);
  const holdsRequests = (num(shown.totals && shown.totals.requests) || 0) > 0;
  const step = Math.max(1, num(shown.bucket_seconds) || 0);
  if ((newest !== null && newest > until) || (holdsRequests && at - until >= step)) refreshMetrics();
}

/** Draw the series the server rendered into the page; follow the window choice. */
export function startMetrics() {
  chartView = watchInView($("metrics-chart"), () => {
    if (chartBehind) {
      chartBehind = false;
      renderChart(shown);
    }
  });
  if (snap.metrics) showMetrics(snap.metrics);
  $("metrics-window").addEventListener("change", refreshMetrics);
  // A browser that restored another choice of window than the page's 5 min.
  if (snap.metrics && $("metrics-window").value !== "5m") refreshMetrics();
}

/** Show another window (the history panel's range), if the list offers it. */
export function setWindow(value) {
  const select = $("metrics-window");
  if (![...select.options].some((option) => option.value === value)) return;
  select.value = value;
  refreshMetrics();
}
