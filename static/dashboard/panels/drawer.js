/* The node drawer: one node's facts, models and status history, read when opened
 * (from its row in the nodes table or a link in the activity feed). */

import { getJson } from "../api.js";
import { lineChart } from "../chart.js";
import { $, badge, el, fmtAge, fmtBytes, fmtMs, fmtPct, setText, stat } from "../dom.js";
import { serverNow, state } from "../state.js";

let returnFocus = null;
let range = () => "1h";

/** Close with the button; give the focus back to what opened the drawer.
 * `range()` is the history range a node's chart covers. */
export function bindDrawer(options = {}) {
  if (options.range) range = options.range;
  $("drawer-close").addEventListener("click", () => $("drawer").close());
  $("drawer").addEventListener("close", () => {
    if (returnFocus && returnFocus.isConnected) returnFocus.focus();
  });
}

export async function openNode(id, returnTo) {
  const dialog = $("drawer");
  const body = $("drawer-body");
  const known = state.nodes.get(id);
  returnFocus = returnTo || null;
  setText($("drawer-title"), known ? known.url : "Node " + id);
  body.replaceChildren(el("p", { className: "muted", text: "Loading…" }));
  if (!dialog.open) dialog.showModal();
  $("drawer-close").focus();
  let node;
  try {
    node = await getJson("/api/network/nodes/" + encodeURIComponent(id));
  } catch (error) {
    body.replaceChildren(el("p", { text: error.status === 404 ? "This node is no longer known." : "Could not load the node: " + error.message }));
    return;
  }
  setText($("drawer-title"), node.url);
  const facts = el("dl", { className: "stats" },
    stat("Status", badge(node.status)),
    stat("Version", node.version || "—"),
    stat("Latency", fmtMs(node.latency_ms) + " (avg " + fmtMs(node.latency_avg_ms) + ")"),
    stat("VRAM in use", fmtBytes(node.vram_used_bytes)),
    stat("Last seen", node.last_seen ? fmtAge(serverNow() - node.last_seen) : "never"),
    stat("Source", node.source || "—"));
  const parts = [facts];
  if (node.last_error) parts.push(el("p", null, el("strong", { text: "Last error: " }), node.last_error));

  const chart = el("div", { className: "chart small", role: "img", "aria-label": "Latency over the last " + range() });
  const availability = el("p", { className: "muted", text: "Reading its history…" });
  const legend = el("p", { className: "legend" },
    el("span", { className: "key swatch line-latency", text: "mean latency" }), " ",
    el("span", { className: "key swatch line-total", text: "highest latency" }));
  parts.push(el("h3", { text: "Latency and availability, last " + range() }), chart, legend, availability);

  parts.push(el("h3", { text: "Loaded models" }));
  const loaded = Array.isArray(node.loaded_models) ? node.loaded_models : [];
  parts.push(loaded.length ? modelTable(loaded, true) : el("p", { className: "muted", text: "None in memory." }));
  const models = Array.isArray(node.models) ? node.models : [];
  parts.push(el("h3", { text: "Models on disk (" + models.length + ")" }));
  parts.push(models.length ? modelTable(models, false) : el("p", { className: "muted", text: "None." }));

  parts.push(el("h3", { text: "Status history" }));
  const history = Array.isArray(node.history) ? node.history : [];
  if (!history.length) parts.push(el("p", { className: "muted", text: "No status changes recorded." }));
  else {
    parts.push(el("ol", { className: "feed" }, ...history.map((change) =>
      el("li", null,
        el("time", { text: new Date(change.at * 1000).toLocaleString() }),
        el("span", { className: "msg" }, badge(change.old_status), " → ", badge(change.new_status),
          change.reason ? " " + change.reason : "")))));
  }
  body.replaceChildren(...parts);
  drawHistory(id, chart, availability);
}

/** The node's kept measurements over the range: latency (mean and highest of each
 * step) and the share of probes after which it was usable. */
async function drawHistory(id, chart, note) {
  let data;
  try {
    data = await getJson("/api/network/nodes/" + encodeURIComponent(id) + "/history?window=" + encodeURIComponent(range()));
  } catch (error) {
    setText(note, "Could not read its history: " + error.message);
    return;
  }
  const points = Array.isArray(data.points) ? data.points : [];
  lineChart(chart, {
    since: data.since, until: data.until, format: fmtMs,
    lines: [{ key: "total", name: "highest latency", values: points.map((p) => [p.t, p.latency_ms_max]) },
      { key: "latency", name: "mean latency", values: points.map((p) => [p.t, p.latency_ms]) }],
  });
  setText(note, data.availability === null
    ? "Not measured in this range."
    : "Usable after " + fmtPct(data.availability) + " of " + data.measurements + " probes (" + data.resolution + " points).");
}

function modelTable(models, loaded) {
  const head = loaded ? ["Model", "VRAM", "Size", "Context", "Expires"] : ["Model", "Parameters", "Quantization", "Size"];
  const rows = models.map((m) => {
    const details = m.details || {};
    const cells = loaded
      ? [m.name || m.model, fmtBytes(m.size_vram), fmtBytes(m.size), m.context_length || "—", m.expires_at || "—"]
      : [m.name || m.model, details.parameter_size || "—", details.quantization_level || "—", fmtBytes(m.size)];
    return el("tr", null, ...cells.map((value) => el("td", { text: value })));
  });
  return el("table", { className: "data compact" },
    el("thead", null, el("tr", null, ...head.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", null, ...rows));
}
