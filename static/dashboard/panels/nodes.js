/* The Ollama nodes table: status, latency with a sparkline of recent probes,
 * loaded models and VRAM (current, or last known when the node does not answer).
 *
 * Whether a node answers is the server's verdict (`usable`, and
 * `loaded_models_known` for its loaded models), sent with the node list, the
 * snapshot, node events and, when the server names them among their fields,
 * samples.
 */

import { getJson, refresher } from "../api.js";
import {
  $, badge, bar, el, flash, fmtAge, fmtBytes, fmtMs, num, onActivate, onBeat, Pager, RowCache, setBadge,
  setText, showRows, sparkline, updateSparkline, watchInView,
} from "../dom.js";
import { pageRows, serverNow, state, takeVerdicts } from "../state.js";
import { sampleRows } from "../streams.js";

const EMPTY = "No nodes known yet. Set SOLLOL_OLLAMA_NODES or add one through the API.";
const LATENCIES_KEPT = 30;
const VERDICTS = ["usable", "loaded_models_known"];
// What a sample may change in a node: measurements and verdicts, by name (the
// probes' samples, with what a server other than Ollama says of its work, and the
// gateway's: requests in flight and waiting).
const SAMPLED = ["status", "latency_ms", "last_seen", "in_flight", "queued", "serving", "gpus", ...VERDICTS];

const latency = new Map(); // node id -> recent probes' latencies (ms)
let changed = () => {};
let openNode = () => {};
let pager = null;
let view = { inView: true };
let behind = false; // changes came while the table was out of view

/** `onChange` is called when the node list was read again (the header counts);
 * `openNode(id, returnFocusTo)` opens a node's details when its row is chosen. */
export function init(callbacks) {
  ({ onChange: changed, openNode } = callbacks);
  pager = new Pager($("nodes-pager"), pageRows("nodes"), () => renderNodes());
  view = watchInView($("nodes-table"), () => {
    if (behind) renderNodes();
  });
  for (const node of state.nodes.values()) rememberLatency(node);
}

function rememberLatency(node) {
  const value = num(node.latency_ms);
  if (value === null || node.id === undefined) return;
  const list = latency.get(node.id) || [];
  if (list.length && list[list.length - 1].probe === node.last_probe) return;
  list.push({ value, probe: node.last_probe });
  while (list.length > LATENCIES_KEPT) list.shift();
  latency.set(node.id, list);
}

/** Fill the sparklines from the server's kept probes, so a reload shows them
 * whole; probes after these arrive as samples. */
export async function loadLatencies() {
  let data;
  try {
    data = await getJson("/api/network/nodes/history?window=3m");
  } catch (_) {
    return; // the sparklines fill from the next probes
  }
  const t = data.fields.indexOf("t");
  const value = data.fields.indexOf("latency_ms");
  for (const [id, points] of Object.entries(data.subjects || {})) {
    const kept = points.filter((p) => num(p[value]) !== null).map((p) => ({ value: p[value], probe: p[t] }));
    const live = (latency.get(Number(id)) || []).filter((s) => !kept.length || s.probe > kept[kept.length - 1].probe);
    latency.set(Number(id), [...kept, ...live].slice(-LATENCIES_KEPT));
  }
  renderNodes();
}

const rows = new RowCache((id) => {
  const cells = {
    url: el("td", { className: "url" }),
    status: el("td"),
    latency: el("td", { className: "num" }),
    load: el("td", { className: "num" }),
    version: el("td"),
    loaded: el("td"),
    vram: el("td"),
    disk: el("td", { className: "num" }),
    seen: el("td"),
  };
  cells.badge = badge("unknown");
  cells.status.append(cells.badge);
  cells.latencyText = el("span");
  cells.spark = sparkline([]);
  cells.latency.append(cells.latencyText, cells.spark);
  const row = el("tr", { className: "clickable", tabindex: "0", id: "node-" + id, dataset: { key: String(id) } },
    cells.url, cells.status, cells.latency, cells.load, cells.version, cells.loaded, cells.vram, cells.disk,
    cells.seen);
  row.cells_ = cells;
  onActivate(row, () => openNode(id, row));
  return row;
});

const KINDS = {
  llamacpp: "llama.cpp", vllm: "vLLM", sglang: "SGLang", tgi: "TGI",
  lmstudio: "LM Studio", localai: "LocalAI", openai: "OpenAI-compatible",
};

/** The node's URL, and its kind when it is not Ollama. */
function nodeName(node) {
  const kind = KINDS[node.kind];
  return kind ? node.url + " (" + kind + ")" : node.url;
}

/** Requests through the gateway ("2 in flight · 5 waiting", or "idle"), and what a
 * server other than Ollama says of its work: "slots 1/2 · 3 waiting · 48 tok/s". */
function loadSummary(node) {
  const active = num(node.in_flight) || 0;
  const waiting = num(node.queued) || 0;
  const parts = [];
  if (active || waiting) parts.push(active + " in flight" + (waiting ? " · " + waiting + " waiting" : ""));
  const s = node.serving && typeof node.serving === "object" ? node.serving : null;
  if (s) {
    if (num(s.slots_total) !== null && num(s.slots_busy) !== null) parts.push("slots " + s.slots_busy + "/" + s.slots_total);
    else if (num(s.requests_running) !== null) parts.push(s.requests_running + " running");
    if (num(s.requests_waiting)) parts.push(s.requests_waiting + " queued on the server");
    if (num(s.generation_tokens_per_second)) parts.push(Math.round(s.generation_tokens_per_second) + " tok/s");
    if (num(s.kv_cache_usage) !== null) parts.push("KV " + Math.round(s.kv_cache_usage * 100) + "%");
  }
  return parts.length ? parts.join(" · ") : "idle";
}

function loadedSummary(node) {
  if (!node.loaded_models_known) {
    // It may answer /api/version and still fail /api/ps: say which.
    return node.usable ? "unknown (its /api/ps fails)" : "unknown (not answering)";
  }
  const models = Array.isArray(node.loaded_models) ? node.loaded_models : [];
  if (!models.length) return "none";
  return models.map((m) => (m.name || m.model || "?") + " (" + fmtBytes(m.size_vram) + ")").join(", ");
}

// Without GPU figures: current while the node answers; a node that does not may
// have unloaded everything, so its last reading is greyed and says so in words.
/** The node's GPUs' memory, used and in all, when its GPU exporter says it. */
function gpuMemory(node) {
  const gpus = Array.isArray(node.gpus) ? node.gpus : [];
  let total = 0;
  let used = 0;
  for (const gpu of gpus) {
    if (!gpu || num(gpu.memory_total) === null || num(gpu.memory_used) === null) return null;
    total += gpu.memory_total;
    used += gpu.memory_used;
  }
  return total > 0 ? { total, used } : null;
}

/** Show the node's VRAM: a bar of its GPUs' memory when their exporter says how
 * much they have ("6.0 GB of 24.0 GB"); else what its models use, as a number (a
 * bar needs the node's own total, which Ollama does not tell). */
function showVram(cell, node) {
  const gpu = gpuMemory(node);
  if (gpu) {
    const label = fmtBytes(gpu.used) + " of " + fmtBytes(gpu.total);
    const d = cell.dataset;
    if (d.value === label && d.state === "gpu") return;
    d.value = label;
    d.state = "gpu";
    d.max = "";
    cell.replaceChildren(bar(gpu.used / gpu.total, "GPU memory in use " + label), el("span", { className: "bar-label", text: label }));
    return;
  }
  const vram = num(node.vram_used_bytes) || 0;
  const seen = node.last_seen !== null && node.last_seen !== undefined;
  // Current only while its loaded models are known (it answers, and /api/ps too).
  const known = node.usable && node.loaded_models_known !== false;
  const vramState = known ? "current" : seen ? "last-known" : "unknown";
  const d = cell.dataset;
  if (d.value === String(vram) && d.state === vramState) return;
  d.value = String(vram);
  d.max = "";
  d.state = vramState;
  const label = fmtBytes(vram);
  if (vramState === "current") {
    cell.replaceChildren(el("span", { className: "vram-amount", text: label, title: "VRAM its loaded models use" }));
  } else if (vramState === "last-known") {
    cell.replaceChildren(el("span", {
      className: "vram-amount stale",
      text: label + " (last known)",
      title: "VRAM in use when its models were last read (not known now)",
    }));
  } else {
    cell.replaceChildren(el("span", { className: "muted", text: "—" }));
  }
}

/** Order nodes by URL (a plain comparison: 1,000 of them sort in well under a ms). */
function byUrl(a, b) {
  const x = String(a.url);
  const y = String(b.url);
  return x < y ? -1 : x > y ? 1 : a.id - b.id;
}

/** Render the page of nodes the reader is on; rows of other pages are not kept. */
export function renderNodes() {
  setText($("nodes-summary"), state.nodes.size + " known");
  if (!view.inView) {
    behind = true;
    return;
  }
  behind = false;
  const nodes = [...state.nodes.values()].sort(byUrl);
  const shown = pager.slice(nodes).map((node) => {
    const row = rows.row(node.id);
    const c = row.cells_;
    setText(c.url, nodeName(node));
    setBadge(c.badge, node.status);
    setText(c.latencyText, fmtMs(node.latency_ms));
    updateSparkline(c.spark, (latency.get(node.id) || []).map((s) => s.value));
    setText(c.load, loadSummary(node));
    setText(c.version, node.version || "—");
    setText(c.loaded, loadedSummary(node));
    showVram(c.vram, node);
    setText(c.disk, Array.isArray(node.models) ? node.models.length : "—");
    row.dataset.lastSeen = node.last_seen === null || node.last_seen === undefined ? "" : String(node.last_seen);
    return row;
  });
  rows.keepOnly(new Set(shown.map((row) => Number(row.dataset.key))));
  showRows($("nodes-body"), shown, EMPTY, 9);
  tickNodes();
}

/** Let "last seen" age with the clock. */
export function tickNodes() {
  if (!view.inView) return;
  const now = serverNow();
  for (const [, row] of rows) {
    const seen = row.dataset.lastSeen;
    setText(row.cells_.seen, seen ? fmtAge(now - Number(seen)) : "never");
  }
}

const scheduleNodes = () => onBeat(renderNodes);

/** Read the node list again: the models, VRAM and versions events do not carry. */
export const refreshNodes = refresher("/api/network/nodes", (data) => {
  const seen = new Set();
  for (const node of data.nodes || []) {
    seen.add(node.id);
    state.nodes.set(node.id, node);
    rememberLatency(node);
  }
  for (const id of [...state.nodes.keys()]) if (!seen.has(id)) state.nodes.delete(id);
  scheduleNodes();
  changed();
}, 2000, "nodes");

/** Each probe's latency, status and verdict, pushed by the server: no event, no fetch. */
export function onNodeSamples(message) {
  for (const sample of sampleRows(message, "nodes")) {
    const node = state.nodes.get(sample.id);
    if (!node) continue;
    for (const field of SAMPLED) {
      if (!(field in sample)) continue;
      // A probe that failed leaves when the node was last seen as it was.
      if (field === "last_seen" && sample.last_seen === null) continue;
      node[field] = sample[field];
    }
    if ("latency_ms" in sample) {  // a probe's sample, not the gateway's
      node.last_probe = message.at;
      rememberLatency(node);
    }
  }
  scheduleNodes();
}

export function onNodeEvent(message) {
  const id = message.node_id;
  if (message.type === "node_removed") {
    state.nodes.delete(id);
  } else if (id !== undefined) {
    const node = state.nodes.get(id) || { id, url: message.node, models: [], loaded_models: [] };
    const status = message.new_status || message.status;
    if (status) node.status = status;
    if (num(message.latency_ms) !== null) node.latency_ms = message.latency_ms;
    takeVerdicts(node, message, VERDICTS);
    if (message.new_status && message.usable) node.last_seen = message.timestamp;
    state.nodes.set(id, node);
    const row = rows.get(id);
    if (row) flash(row);
  }
  scheduleNodes();
  refreshNodes();
}
