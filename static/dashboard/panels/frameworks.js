/* The Ray and Dask panel: each cluster's numbers as collected, kept current by
 * samples (?samples=1 on /ws/frameworks), with a link to (and an optional embed
 * of) the cluster's own dashboard. */

import { getJson } from "../api.js";
import { $, badge, bar, el, fmtBytes, fmtClock, num, safeUrl, setText, sparkline, throttle } from "../dom.js";
import { serverNow, snap } from "../state.js";

const FRAMEWORKS = ["ray", "dask"];
const TITLES = { ray: "Ray", dask: "Dask" };
// What a sample may change in a framework's answer (the rest comes with a fetch).
const SAMPLE_FIELDS = ["status", "collected_at", "duration_ms", "error", "warnings", "resources",
  "tasks", "jobs", "actors", "nodes_total", "nodes_alive", "workers_total", "ray_version", "dask_version"];
// Per framework: its last answer (kept current by samples), whether this server
// collects it (false after a 404), and the fetch retries after a failure.
const frameworks = {};
for (const name of FRAMEWORKS) {
  frameworks[name] = { data: null, available: null, attempts: 0, retry: null, historyMax: 60, note: null };
}
let noneCollected = () => {};

function describeValue(key, value) {
  if (value === null || value === undefined) return "—";
  const bytes = /memory|object_store/i.test(key);
  const show = (v) => (bytes && num(v) !== null ? fmtBytes(v) : String(v));
  if (typeof value === "object") {
    const used = num(value.used), total = num(value.total);
    if ("used" in value && "total" in value) return show(used === null ? "?" : used) + " / " + show(total === null ? "?" : total);
    // A list (Ray's running jobs) says how many; an object, its entries.
    const brief = (v) => Array.isArray(v) ? String(v.length)
      : v && typeof v === "object" ? Object.entries(v).map(([a, b]) => a + " " + brief(b)).join(", ")
      : show(v);
    if (Array.isArray(value)) return brief(value);
    return Object.entries(value).map(([k, v]) => k + " " + brief(v)).join(" · ");
  }
  if (typeof value === "number" && !Number.isInteger(value)) return show(Math.round(value * 10) / 10);
  return show(value);
}

function embedButton(box, link, title) {
  const embed = el("button", { type: "button", "aria-expanded": "false", text: "Embed" });
  embed.addEventListener("click", () => {
    const frame = box.querySelector("iframe");
    if (frame) {
      frame.remove();
      embed.setAttribute("aria-expanded", "false");
      setText(embed, "Embed");
      return;
    }
    box.append(el("iframe", { src: link, title: title + " dashboard", loading: "lazy", referrerpolicy: "no-referrer",
      sandbox: "allow-scripts allow-same-origin allow-forms allow-popups" }));
    embed.setAttribute("aria-expanded", "true");
    setText(embed, "Hide embed");
  });
  return embed;
}

function renderFramework(name, data) {
  const box = $("framework-" + name);
  // The panel is rebuilt with each sample: a keyboard user keeps their place.
  const active = box.contains(document.activeElement) ? document.activeElement : null;
  const refocus = active ? (active.tagName === "A" ? "a" : active.tagName === "BUTTON" ? "button" : null) : null;
  const title = TITLES[name];
  const status = String(data.status || "unknown");
  const parts = [el("h3", null, title + " ", badge(status, status.replace("_", " ")))];
  const note = frameworks[name].note;
  if (note) parts.push(el("p", { className: "muted fw-state", role: "status", text: note }));
  const link = safeUrl(data.public_url) || safeUrl(data.dashboard_url);
  if (status === "not_configured") {
    parts.push(el("p", { className: "muted",
      text: "Not configured: set SOLLOL_" + name.toUpperCase() + "_DASHBOARD_URL to watch a " + title + " cluster." }));
  } else if (data.error) {
    parts.push(el("p", null, el("strong", { text: "Error: " }), String(data.error)));
  }
  if (data.stale) parts.push(el("p", { className: "muted", text: "These numbers are old: collection has stopped." }));
  const facts = el("dl");
  const fact = (label, value) => facts.append(el("dt", { text: label }), el("dd", null, value));
  const version = data.ray_version || data.dask_version;
  if (version) fact("Version", version);
  if (name === "ray" && num(data.nodes_total) !== null) fact("Nodes", data.nodes_alive + " alive of " + data.nodes_total);
  if (name === "dask" && num(data.workers_total) !== null) fact("Workers", String(data.workers_total));
  const resources = data.resources && typeof data.resources === "object" ? data.resources : {};
  for (const [key, value] of Object.entries(resources)) {
    const used = value && typeof value === "object" ? num(value.used) : null;
    const total = value && typeof value === "object" ? num(value.total) : null;
    const text = describeValue(key, value);
    fact(key, used !== null && total ? el("span", null, bar(used / total, key + " " + text), el("span", { className: "bar-label", text })) : text);
  }
  for (const key of name === "ray" ? ["jobs", "tasks", "actors"] : ["tasks"]) {
    if (data[key] && typeof data[key] === "object") fact(key, describeValue(key, data[key]));
  }
  const history = Array.isArray(data.history) ? data.history : [];
  const cpu = history.map((h) => num(h.cpu_percent)).filter((v) => v !== null);
  if (cpu.length > 1) fact("CPU % (recent)", el("span", null, sparkline(cpu), " " + cpu[cpu.length - 1].toFixed(0) + " %"));
  if (data.collected_at) fact("Collected", fmtClock(data.collected_at));
  if (facts.children.length) parts.push(facts);
  if (link) {
    const open = el("a", { href: link, target: "_blank", rel: "noopener noreferrer", text: "Open the " + title + " dashboard" });
    parts.push(el("p", null, open, " ", embedButton(box, link, title)));
  }
  // An open embed survives the refresh of the numbers around it.
  const frame = box.querySelector("iframe");
  box.replaceChildren(...parts);
  if (frame && link) {
    box.append(frame);
    const button = box.querySelector("button[aria-expanded]");
    button.setAttribute("aria-expanded", "true");
    setText(button, "Hide embed");
  }
  if (refocus && box.querySelector(refocus)) box.querySelector(refocus).focus();
}

/** Say what the panel is waiting for, under its heading, until a fetch succeeds. */
function showNote(name, text) {
  frameworks[name].note = text;
  const box = $("framework-" + name);
  let note = box.querySelector(".fw-state");
  if (!note) {
    note = el("p", { className: "muted fw-state", role: "status" });
    box.insertBefore(note, box.querySelector("h3") ? box.querySelector("h3").nextSibling : box.firstChild);
  }
  setText(note, text);
}

/** Keep an answer: samples extend its history up to as long as the server's. */
function keep(name, data) {
  frameworks[name].data = data;
  frameworks[name].historyMax = Math.max(60, Array.isArray(data.history) ? data.history.length : 0);
  renderFramework(name, data);
}

async function load(name) {
  const fw = frameworks[name];
  clearTimeout(fw.retry);
  fw.retry = null;
  try {
    const data = await getJson("/api/" + name + "/metrics");
    fw.available = true;
    fw.attempts = 0;
    fw.note = null;
    keep(name, data);
  } catch (error) {
    if (error.status === 404) {
      fw.available = false;
      $("framework-" + name).replaceChildren(el("h3", { text: TITLES[name] }),
        el("p", { className: "muted", text: "This server does not collect " + TITLES[name] + " metrics." }));
      if (FRAMEWORKS.every((n) => frameworks[n].available === false)) noneCollected();
      return;
    }
    // A 503 while the database is away, a dropped connection: try again, less
    // often each time; the stream's events and samples go on meanwhile.
    fw.attempts += 1;
    const delay = Math.min(30000, 1000 * 2 ** Math.min(fw.attempts - 1, 5));
    showNote(name, "Could not load the metrics (" + error.message + "); trying again in " +
      Math.round(delay / 1000) + " s.");
    fw.retry = setTimeout(() => load(name), delay);
  }
}

/** Read both answers again (on subscribing, and after a framework event). */
export const refreshFrameworks = throttle(() => {
  for (const name of FRAMEWORKS) if (frameworks[name].available !== false) load(name);
}, 2000);

/** Each collection's numbers, pushed by the server: no event, no fetch. */
export function onFrameworkSamples(message) {
  for (const sample of Array.isArray(message.frameworks) ? message.frameworks : []) {
    const fw = sample && frameworks[sample.framework];
    if (!fw || !fw.data || fw.available === false) continue;
    const data = fw.data;
    for (const key of SAMPLE_FIELDS) if (key in sample) data[key] = sample[key];
    data.stale = false;
    const point = sample.point;
    if (point && typeof point === "object" && num(point.t) !== null) {
      if (!Array.isArray(data.history)) data.history = [];
      const last = data.history[data.history.length - 1];
      if (!last || !(num(last.t) >= point.t)) data.history.push(point);
      while (data.history.length > fw.historyMax) data.history.shift();
    }
    renderFramework(sample.framework, data);
  }
}

/** Mark numbers as old once no collection has arrived for a while (a clock, no
 * request): when collections stop, no message comes to say so. The limit is the
 * server's (frameworks.services.metrics `stale`), from the intervals it sends. */
export function tickFrameworks() {
  const limit = 3 * (num(snap.framework_interval) || 5) + (num(snap.framework_timeout) || 2);
  for (const name of FRAMEWORKS) {
    const data = frameworks[name].data;
    if (!data || data.stale || num(data.collected_at) === null) continue;
    if (serverNow() - data.collected_at > limit) {
      data.stale = true;
      renderFramework(name, data);
    }
  }
}

/** Show the answers the page came with (links on the host it was loaded from).
 * `whenNoneCollected` is called once this server collects neither framework. */
export function startFrameworks({ whenNoneCollected }) {
  noneCollected = whenNoneCollected;
  const given = snap.frameworks || {};
  for (const name of FRAMEWORKS) {
    const data = given[name];
    if (data && typeof data === "object") keep(name, data);
  }
}
