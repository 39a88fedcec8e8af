/* Fleet history: usable nodes and their latency over the chosen range, and each
 * node's and backend's availability, from the server's kept series
 * (/api/network/history, /api/network/availability): whole at first paint,
 * the same after a reload. The range also sets the request chart's window and
 * the range of a node's chart in the drawer. */

import { refresher } from "../api.js";
import { lineChart } from "../chart.js";
import { $, el, fmtMs, fmtPct, setText, showRows } from "../dom.js";

const range = () => $("history-range").value;
const fleetPath = () => "/api/network/history?window=" + encodeURIComponent(range());
const availabilityPath = () => "/api/network/availability?window=" + encodeURIComponent(range());
const SHOWN = 10; // availability rows

let shown = null; // the fleet answer on the page

function showFleet(data) {
  shown = data;
  const points = Array.isArray(data.points) ? data.points : [];
  const at = (key) => points.map((p) => [p.t, p[key]]);
  const frame = { since: data.since, until: data.until };
  lineChart($("history-nodes"), {
    ...frame, format: (v) => String(Math.round(v)),
    lines: [{ key: "total", name: "known nodes", values: at("nodes_total") },
      { key: "usable", name: "usable nodes", values: at("nodes_usable") }],
  });
  lineChart($("history-latency"), {
    ...frame, format: fmtMs, lines: [{ key: "latency", name: "mean probe latency", values: at("latency_ms") }],
  });
  const serving = points.filter((p) => p.serving !== null && p.serving !== undefined);
  const measured = serving.reduce((sum, p) => sum + p.n, 0);
  const up = serving.reduce((sum, p) => sum + p.serving * p.n, 0);
  setText($("history-note"), measured
    ? "Fleet able to serve " + fmtPct(up / measured) + " of the range · kept as " + data.resolution +
      " points" + (data.step ? " of " + data.step + " s" : "")
    : "Nothing measured in this range yet.");
  $("history-nodes").setAttribute("aria-label", "Usable and known nodes over the last " + range());
  $("history-latency").setAttribute("aria-label", "Mean probe latency of usable nodes over the last " + range());
}

function showAvailability(data) {
  const rows = [...(data.nodes || []).map((n) => ({ name: n.url, ...n })),
    ...(data.backends || []).map((b) => ({ name: b.address, ...b }))]
    .filter((r) => r.availability !== null)
    .sort((a, b) => a.availability - b.availability)
    .slice(0, SHOWN);
  showRows($("availability-table").tBodies[0], rows.map((r) => el("tr", null,
    el("td", { text: r.name }), el("td", { className: "num", text: fmtPct(r.availability) }),
    el("td", { className: "num", text: String(r.measurements) }))), "Nothing measured in this range yet.", 3);
}

const refreshFleet = refresher(fleetPath, (data, path) => {
  if (fleetPath() === path) showFleet(data);
}, 2000);
const refreshAvailability = refresher(availabilityPath, (data, path) => {
  if (availabilityPath() === path) showAvailability(data);
}, 10000);

/** The server's clock (the metrics sample): read again once a step went by. */
export function onTick(at) {
  if (!shown) return;
  const step = Math.max(5, shown.step || 0);
  if (at - shown.until >= step) {
    refreshFleet();
    refreshAvailability();
  }
}

/** The range the page shows (1h, 24h, 7d, 30d). */
export const currentRange = range;

/** First read; a new range re-reads the charts and moves the request window. */
export function startHistory({ onRange }) {
  $("history-range").addEventListener("change", () => {
    refreshFleet();
    refreshAvailability();
    onRange(range());
  });
  refreshFleet();
  refreshAvailability();
}
