/* SOLLOL dashboard: renders the server's snapshot at once, then follows the streams.
 *
 * Rules this file keeps:
 * - Every value that came over the network is shown with textContent (or as an
 *   attribute value of our own choosing); nothing is ever parsed as HTML.
 * - The snapshot in the page carries, per stream, the id of the newest event read
 *   before the state was: each WebSocket resumes after it (?since=), so nothing
 *   that changes between the page's render and the socket's opening is lost, and
 *   a reconnect resumes after the last id received.
 * - No periodic reloads or polling: values that are no events (per-probe
 *   latency, quiet heartbeats, each Ray/Dask collection's numbers, the traces
 *   that got spans, the metrics window's clock) arrive as "samples" on the node,
 *   application, framework and activity streams (?samples=1).
 */
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const FEED_MAX = 300;
  const LOGS_MAX = 1000;
  const RECONNECT_MAX_MS = 8000;
  // Latency of each probe and quiet heartbeats are no events: the node and
  // application streams send them as "samples" (?samples=1), without an id.
  const LEVELS = { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50 };

  const $ = (id) => document.getElementById(id);
  const snapshotNode = $("dashboard-snapshot");
  const snap = snapshotNode ? JSON.parse(snapshotNode.textContent) : {};
  // Server clock minus browser clock: "last seen" ticks in the server's time.
  const clockSkew = (snap.generated_at || Date.now() / 1000) - Date.now() / 1000;
  const serverNow = () => Date.now() / 1000 + clockSkew;

  // ---------------------------------------------------------------- helpers

  /** Create an element; text and children are always inserted as text nodes. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === undefined || value === null || value === false) continue;
        if (key === "text") node.textContent = String(value);
        else if (key === "className") node.className = value;
        else if (key === "dataset") Object.assign(node.dataset, value);
        else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, String(value));
      }
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function setText(node, value) {
    const text = value === null || value === undefined ? "" : String(value);
    if (node.textContent !== text) node.textContent = text;
  }

  function statusClass(status) {
    return "badge status-" + String(status || "unknown").replace(/[^a-z_]/gi, "");
  }

  function badge(status, label) {
    return el("span", { className: statusClass(status), text: label || status || "unknown" });
  }

  function setBadge(span, status) {
    const cls = statusClass(status);
    if (span.className !== cls) span.className = cls;
    setText(span, status || "unknown");
  }

  /** Return an http(s) URL as a string, or null: never a javascript: link. */
  function safeUrl(value) {
    if (typeof value !== "string" || !value) return null;
    try {
      const url = new URL(value, location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  const num = (value) => (typeof value === "number" && isFinite(value) ? value : null);

  function fmtMs(value) {
    const ms = num(value);
    if (ms === null) return "—";
    if (ms >= 10000) return (ms / 1000).toFixed(1) + " s";
    return (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1)) + " ms";
  }

  function fmtBytes(value) {
    const bytes = num(value);
    if (bytes === null) return "—";
    if (bytes >= 2 ** 30) return (bytes / 2 ** 30).toFixed(1) + " GB";
    if (bytes >= 2 ** 20) return (bytes / 2 ** 20).toFixed(0) + " MB";
    return bytes.toFixed(0) + " B";
  }

  function fmtAge(seconds) {
    const s = num(seconds);
    if (s === null) return "—";
    if (s < 1) return "just now";
    if (s < 90) return Math.floor(s) + " s ago";
    if (s < 5400) return Math.floor(s / 60) + " min ago";
    if (s < 172800) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function fmtSpan(seconds) {
    const s = num(seconds);
    if (s === null) return "—";
    if (s < 60) return Math.floor(s) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (Math.floor(s) % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + (Math.floor(s / 60) % 60) + " min";
    return Math.floor(s / 86400) + " d " + (Math.floor(s / 3600) % 24) + " h";
  }

  function fmtClock(ts) {
    const t = num(ts);
    return t === null ? "—" : new Date(t * 1000).toLocaleTimeString();
  }

  function fmtPct(value) {
    const v = num(value);
    return v === null ? "—" : (v * 100).toFixed(1) + " %";
  }

  /** Run fn at most once per `ms`, with a trailing call for what came meanwhile. */
  function throttle(fn, ms) {
    let last = 0;
    let timer = null;
    return function () {
      if (timer) return;
      const wait = Math.max(0, last + ms - Date.now());
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        fn();
      }, wait);
    };
  }

  async function getJson(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    if (!response.ok) {
      const error = new Error(path + " answered " + response.status);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  function bar(fraction, label) {
    const inner = el("span");
    inner.style.width = Math.max(0, Math.min(1, fraction || 0)) * 100 + "%";
    const outer = el("div", { className: "bar", role: "img", "aria-label": label }, inner);
    return outer;
  }

  function sparkline(values) {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 70 18");
    svg.setAttribute("aria-hidden", "true");
    const line = document.createElementNS(SVG_NS, "polyline");
    svg.append(line);
    updateSparkline(svg, values);
    return svg;
  }

  function updateSparkline(svg, values) {
    const points = values.filter((v) => num(v) !== null);
    const line = svg.firstChild;
    if (points.length < 2) {
      line.setAttribute("points", "");
      return;
    }
    const max = Math.max(...points);
    const min = Math.min(...points);
    const span = max - min || 1;
    const step = 70 / (points.length - 1);
    line.setAttribute(
      "points",
      points.map((v, i) => (i * step).toFixed(1) + "," + (16 - ((v - min) / span) * 14).toFixed(1)).join(" "),
    );
  }

  // ---------------------------------------------------------------- state

  const state = {
    health: snap.health || null,
    nodes: new Map(),
    backends: new Map(),
    apps: new Map(),
    appsTotal: snap.applications_total || 0,
    latency: new Map(), // node id -> recent latencies (ms)
    appSort: { key: "name", dir: 1 },
    feedIds: new Set(),
    logs: [],
    logIds: new Set(),
    logsPaused: false,
    logsHeld: [],
    logsDropped: 0,
    metrics: snap.metrics || null,
    traces: snap.traces || [],
  };

  function rememberLatency(node) {
    const value = num(node.latency_ms);
    if (value === null || node.id === undefined) return;
    const list = state.latency.get(node.id) || [];
    if (list.length && list[list.length - 1].probe === node.last_probe) return;
    list.push({ value, probe: node.last_probe });
    while (list.length > 30) list.shift();
    state.latency.set(node.id, list);
  }

  for (const node of snap.nodes || []) {
    state.nodes.set(node.id, node);
    rememberLatency(node);
  }
  for (const backend of snap.backends || []) state.backends.set(backend.id, backend);
  for (const app of snap.applications || []) state.apps.set(app.app_id, app);

  // ---------------------------------------------------------------- connection

  const streams = [];

  function renderConnection() {
    const box = $("connection");
    const text = $("connection-text");
    const active = streams.filter((s) => !s.given_up);
    let stateName = "live";
    let label = "Live";
    const down = active.filter((s) => s.state !== "live");
    if (active.length && down.length) {
      const reconnecting = down.filter((s) => s.state === "reconnecting");
      if (reconnecting.length) {
        stateName = "reconnecting";
        label = "Reconnecting… (" + reconnecting.map((s) => s.label).join(", ") + ")";
      } else {
        stateName = "connecting";
        label = "Connecting…";
      }
    }
    box.dataset.state = stateName;
    setText(text, label);
    document.body.dataset.connection = stateName;
  }

  /** One WebSocket stream that reconnects with backoff and resumes after its last id. */
  class Stream {
    constructor(label, path, since, onMessage, options = {}) {
      this.label = label;
      this.path = path;
      this.lastId = typeof since === "number" ? since : null;
      this.onMessage = onMessage;
      this.params = options.params || {};
      this.onOpen = options.onOpen || null;
      this.attempts = 0;
      this.state = "connecting";
      this.given_up = false;
      this.ws = null;
      streams.push(this);
    }

    url() {
      const query = new URLSearchParams(this.params);
      if (this.lastId !== null) query.set("since", String(this.lastId));
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const qs = query.toString();
      return scheme + "//" + location.host + this.path + (qs ? "?" + qs : "");
    }

    connect() {
      if (this.given_up) return;
      let ws;
      try {
        ws = new WebSocket(this.url());
      } catch (_) {
        this.retry();
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        this.attempts = 0;
        this.state = "live";
        renderConnection();
        if (this.onOpen) this.onOpen(this);
      };
      ws.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (_) {
          return;
        }
        if (!message || typeof message !== "object") return;
        if (message.type === "error") {
          console.warn("stream " + this.path + " refused:", message.message);
          return;
        }
        const id = num(message.id);
        if (id !== null && this.lastId !== null && id <= this.lastId) return;
        try {
          this.onMessage(message);
        } finally {
          if (id !== null) this.lastId = id;
        }
      };
      ws.onclose = (event) => {
        this.ws = null;
        if (this.given_up) return;
        if (event.code === 4400) {
          this.given_up = true;
          this.state = "offline";
          renderConnection();
          return;
        }
        this.retry();
      };
    }

    /** Stop for good: no reconnecting, and no longer part of the connection state. */
    close() {
      this.given_up = true;
      this.state = "offline";
      if (this.ws) this.ws.close();
      renderConnection();
    }

    retry() {
      this.attempts += 1;
      this.state = "reconnecting";
      renderConnection();
      const base = Math.min(RECONNECT_MAX_MS, 250 * 2 ** Math.min(this.attempts - 1, 6));
      setTimeout(() => this.connect(), base * (0.75 + Math.random() * 0.5));
    }
  }

  // ---------------------------------------------------------------- header

  function renderHealth() {
    const health = state.health;
    if (!health) return;
    const box = $("health");
    box.dataset.status = health.status;
    setBadge($("health-status"), health.status);
    setText($("health-reason"), health.reason || (health.status === "healthy" ? "all nodes and backends answer" : ""));
    const nodes = [...state.nodes.values()];
    const count = (list, names) => list.filter((n) => names.includes(n.status)).length;
    setText(
      $("count-nodes"),
      count(nodes, ["healthy"]) + " healthy · " + count(nodes, ["degraded"]) + " degraded · " +
        count(nodes, ["unhealthy", "offline"]) + " down" +
        (count(nodes, ["unknown"]) ? " · " + count(nodes, ["unknown"]) + " unknown" : ""),
    );
    const backends = [...state.backends.values()];
    setText(
      $("count-backends"),
      count(backends, ["online"]) + " online · " + count(backends, ["busy"]) + " busy · " +
        count(backends, ["offline"]) + " offline" +
        (count(backends, ["incompatible"]) ? " · " + count(backends, ["incompatible"]) + " incompatible" : ""),
    );
    const apps = [...state.apps.values()];
    const active = apps.filter((a) => a.status === "active").length;
    const total = Math.max(state.appsTotal, apps.length);
    setText($("count-apps"), active + " active · " + (apps.length - active) + " stale" +
      (total > apps.length ? " (" + total + " registered)" : ""));
  }

  const refreshHealth = throttle(async () => {
    try {
      state.health = await getJson("/api/network/health");
    } catch (_) {
      return;
    }
    renderHealth();
  }, 1000);

  // ---------------------------------------------------------------- nodes

  const nodeRows = new Map();

  function nodeRow(id) {
    let row = nodeRows.get(id);
    if (row) return row;
    const cells = {
      url: el("td", { className: "url" }),
      status: el("td"),
      latency: el("td", { className: "num" }),
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
    row = el("tr", { className: "clickable", tabindex: "0", id: "node-" + id, dataset: { key: String(id) } });
    row.append(cells.url, cells.status, cells.latency, cells.version, cells.loaded, cells.vram, cells.disk, cells.seen);
    row.cells_ = cells;
    row.addEventListener("click", () => openNode(id, row));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        openNode(id, row);
      }
    });
    nodeRows.set(id, row);
    return row;
  }

  function loadedSummary(node) {
    const models = Array.isArray(node.loaded_models) ? node.loaded_models : [];
    if (!node.loaded_models_known && node.status && !["healthy", "degraded"].includes(node.status)) {
      return "unknown (not answering)";
    }
    if (!models.length) return "none";
    return models.map((m) => (m.name || m.model || "?") + " (" + fmtBytes(m.size_vram) + ")").join(", ");
  }

  function renderNodes() {
    const body = $("nodes-body");
    const nodes = [...state.nodes.values()].sort((a, b) => String(a.url).localeCompare(String(b.url)));
    const maxVram = Math.max(1, ...nodes.map((n) => num(n.vram_used_bytes) || 0));
    const rows = [];
    for (const node of nodes) {
      const row = nodeRow(node.id);
      const c = row.cells_;
      setText(c.url, node.url);
      setBadge(c.badge, node.status);
      setText(c.latencyText, fmtMs(node.latency_ms));
      updateSparkline(c.spark, (state.latency.get(node.id) || []).map((s) => s.value));
      setText(c.version, node.version || "—");
      setText(c.loaded, loadedSummary(node));
      const vram = num(node.vram_used_bytes) || 0;
      // A node that does not answer may have unloaded everything: its last
      // reading is shown as such, greyed and in words.
      const answering = ["healthy", "degraded"].includes(node.status);
      const measured = answering || (node.last_seen !== null && node.last_seen !== undefined);
      const vramState = answering ? "current" : measured ? "last-known" : "unknown";
      if (c.vram.dataset.value !== String(vram) || c.vram.dataset.max !== String(maxVram) || c.vram.dataset.state !== vramState) {
        c.vram.dataset.value = String(vram);
        c.vram.dataset.max = String(maxVram);
        c.vram.dataset.state = vramState;
        const label = fmtBytes(vram);
        if (vramState === "current") {
          c.vram.replaceChildren(bar(vram / maxVram, "VRAM in use " + label), el("span", { className: "bar-label", text: label }));
        } else if (vramState === "last-known") {
          const known = bar(vram / maxVram, "VRAM in use when last seen " + label + " (not answering now)");
          known.classList.add("stale");
          c.vram.replaceChildren(known, el("span", { className: "bar-label", text: label + " (last known)" }));
        } else {
          c.vram.replaceChildren(el("span", { className: "muted", text: "—" }));
        }
      }
      setText(c.disk, Array.isArray(node.models) ? node.models.length : "—");
      row.dataset.lastSeen = node.last_seen === null || node.last_seen === undefined ? "" : String(node.last_seen);
      rows.push(row);
    }
    for (const [id, row] of nodeRows) {
      if (!state.nodes.has(id)) {
        row.remove();
        nodeRows.delete(id);
      }
    }
    replaceRowsIfChanged(body, rows, "No nodes known yet. Set SOLLOL_OLLAMA_NODES or add one through the API.", 8);
    tickNodes();
    setText($("nodes-summary"), nodes.length + " known");
  }

  function tickNodes() {
    const now = serverNow();
    for (const row of nodeRows.values()) {
      const seen = row.dataset.lastSeen;
      setText(row.cells_.seen, seen ? fmtAge(now - Number(seen)) : "never");
    }
  }

  function replaceRowsIfChanged(body, rows, emptyText, columns) {
    if (!rows.length) {
      if (!body.querySelector("tr.empty")) {
        body.replaceChildren(el("tr", { className: "empty" }, el("td", { colspan: columns, text: emptyText })));
      }
      return;
    }
    const current = body.children;
    let same = current.length === rows.length;
    for (let i = 0; same && i < rows.length; i++) same = current[i] === rows[i];
    if (!same) body.replaceChildren(...rows);
  }

  const scheduleNodes = throttle(renderNodes, 250);

  const refreshNodes = throttle(async () => {
    let data;
    try {
      data = await getJson("/api/network/nodes");
    } catch (_) {
      return;
    }
    const seen = new Set();
    for (const node of data.nodes || []) {
      seen.add(node.id);
      state.nodes.set(node.id, node);
      rememberLatency(node);
    }
    for (const id of [...state.nodes.keys()]) if (!seen.has(id)) state.nodes.delete(id);
    scheduleNodes();
    renderHealth();
  }, 2000);

  function onNodeSamples(message) {
    for (const [id, status, latency, lastSeen] of message.nodes || []) {
      const node = state.nodes.get(id);
      if (!node) continue;
      node.status = status;
      node.latency_ms = latency;
      if (lastSeen !== null) node.last_seen = lastSeen;
      node.last_probe = message.at;
      rememberLatency(node);
    }
    scheduleNodes();
  }

  function onNodeEvent(message) {
    if (message.type === "samples") {
      onNodeSamples(message);
      return;
    }
    const id = message.node_id;
    if (message.type === "node_removed") {
      state.nodes.delete(id);
    } else if (id !== undefined) {
      const node = state.nodes.get(id) || { id, url: message.node, models: [], loaded_models: [] };
      if (message.new_status) node.status = message.new_status;
      else if (message.status) node.status = message.status;
      if (num(message.latency_ms) !== null) node.latency_ms = message.latency_ms;
      if (message.new_status === "healthy" || message.new_status === "degraded") {
        node.last_seen = message.timestamp;
        node.loaded_models_known = true;
      } else if (message.new_status) {
        node.loaded_models_known = false;
      }
      state.nodes.set(id, node);
      const row = nodeRows.get(id);
      if (row) flash(row);
    }
    scheduleNodes();
    renderHealth();
    refreshHealth();
    refreshNodes();
    addFeed(message, "nodes");
  }

  function flash(row) {
    row.classList.remove("flash");
    void row.offsetWidth; // restart the animation
    row.classList.add("flash");
  }

  // ---------------------------------------------------------------- node drawer

  let drawerReturn = null;

  async function openNode(id, returnTo) {
    const dialog = $("drawer");
    const body = $("drawer-body");
    const known = state.nodes.get(id);
    drawerReturn = returnTo || null;
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
    const facts = el("dl", { className: "stats" });
    const fact = (name, value) => facts.append(el("div", null, el("dt", { text: name }), el("dd", null, value)));
    fact("Status", badge(node.status));
    fact("Version", node.version || "—");
    fact("Latency", fmtMs(node.latency_ms) + " (avg " + fmtMs(node.latency_avg_ms) + ")");
    fact("VRAM in use", fmtBytes(node.vram_used_bytes));
    fact("Last seen", node.last_seen ? fmtAge(serverNow() - node.last_seen) : "never");
    fact("Source", node.source || "—");
    const parts = [facts];
    if (node.last_error) parts.push(el("p", null, el("strong", { text: "Last error: " }), node.last_error));

    parts.push(el("h3", { text: "Loaded models" }));
    const loaded = Array.isArray(node.loaded_models) ? node.loaded_models : [];
    parts.push(loaded.length ? modelTable(loaded, true) : el("p", { className: "muted", text: "None in memory." }));
    parts.push(el("h3", { text: "Models on disk (" + (node.models || []).length + ")" }));
    parts.push((node.models || []).length ? modelTable(node.models, false) : el("p", { className: "muted", text: "None." }));

    parts.push(el("h3", { text: "Status history" }));
    const history = Array.isArray(node.history) ? node.history : [];
    if (!history.length) parts.push(el("p", { className: "muted", text: "No status changes recorded." }));
    else {
      const list = el("ol", { className: "feed" });
      for (const change of history) {
        list.append(
          el("li", null,
            el("time", { text: new Date(change.at * 1000).toLocaleString() }),
            el("span", { className: "msg" }, badge(change.old_status), " → ", badge(change.new_status),
              change.reason ? " " + change.reason : "")),
        );
      }
      parts.push(list);
    }
    body.replaceChildren(...parts);
  }

  function modelTable(models, loaded) {
    const head = loaded ? ["Model", "VRAM", "Size", "Context", "Expires"] : ["Model", "Parameters", "Quantization", "Size"];
    const table = el("table", { className: "data compact" },
      el("thead", null, el("tr", null, ...head.map((h) => el("th", { scope: "col", text: h })))));
    const tbody = el("tbody");
    for (const m of models) {
      const details = m.details || {};
      const cells = loaded
        ? [m.name || m.model, fmtBytes(m.size_vram), fmtBytes(m.size), m.context_length || "—", m.expires_at || "—"]
        : [m.name || m.model, details.parameter_size || "—", details.quantization_level || "—", fmtBytes(m.size)];
      tbody.append(el("tr", null, ...cells.map((value) => el("td", { text: value }))));
    }
    table.append(tbody);
    return table;
  }

  // ---------------------------------------------------------------- backends

  function renderBackends() {
    const body = $("backends-body");
    const backends = [...state.backends.values()].sort((a, b) => String(a.address).localeCompare(String(b.address)));
    const rows = backends.map((backend) => {
      const devices = el("td");
      const list = Array.isArray(backend.devices) ? backend.devices : [];
      if (!list.length) devices.append(el("span", { className: "muted", text: backend.status === "online" || backend.status === "busy" ? "not reported yet" : "—" }));
      for (const device of list) {
        const free = num(device.free);
        const total = num(device.total);
        const used = free !== null && total ? (total - free) / total : 0;
        const label = "device " + device.index + ": " + fmtBytes(free) + " free of " + fmtBytes(total);
        devices.append(el("div", { className: "device" }, bar(used, label), el("span", { className: "bar-label", text: label })));
      }
      return el("tr", { id: "backend-" + backend.id, dataset: { key: String(backend.id) } },
        el("td", { className: "url", text: backend.address }),
        el("td", null, badge(backend.status)),
        el("td", { text: backend.protocol || "—" }),
        devices);
    });
    if (rows.length) body.replaceChildren(...rows);
    else replaceRowsIfChanged(body, rows, "No RPC backends known.", 4);
    setText($("backends-summary"), backends.length + " known");
  }

  const scheduleBackends = throttle(renderBackends, 250);

  const refreshBackends = throttle(async () => {
    let data;
    try {
      data = await getJson("/api/network/backends");
    } catch (_) {
      return;
    }
    state.backends = new Map((data.backends || []).map((b) => [b.id, b]));
    scheduleBackends();
    renderHealth();
  }, 2000);

  function onBackendEvent(message) {
    const id = message.backend_id;
    if (message.type.endsWith("_removed")) state.backends.delete(id);
    else if (id !== undefined) {
      const backend = state.backends.get(id) || { id, address: message.backend, devices: [] };
      backend.status = message.new_status || message.status || backend.status;
      state.backends.set(id, backend);
    }
    scheduleBackends();
    renderHealth();
    refreshHealth();
    refreshBackends();
    addFeed(message, "backends");
  }

  // ---------------------------------------------------------------- applications

  const appRows = new Map();

  function appRow(app) {
    let row = appRows.get(app.app_id);
    if (row) return row;
    const cells = {
      name: el("td"),
      router: el("td"),
      version: el("td"),
      status: el("td"),
      uptime: el("td", { className: "num" }),
      seen: el("td"),
      meta: el("td"),
    };
    cells.badge = badge(app.status);
    cells.status.append(cells.badge);
    cells.summary = el("summary");
    cells.pre = el("pre");
    cells.details = el("details", null, cells.summary, cells.pre);
    cells.details.addEventListener("toggle", () => {
      if (cells.details.open) {
        const current = state.apps.get(row.dataset.key);
        setText(cells.pre, JSON.stringify(current ? current.metadata : {}, null, 2));
      }
    });
    cells.meta.append(cells.details);
    row = el("tr", { id: "app-" + app.app_id, dataset: { key: app.app_id } },
      cells.name, cells.router, cells.version, cells.status, cells.uptime, cells.seen, cells.meta);
    row.cells_ = cells;
    appRows.set(app.app_id, row);
    return row;
  }

  function appSortValue(app, key) {
    switch (key) {
      case "uptime": return -(num(app.start_time) || 0);
      case "last_seen": return -(num(app.last_heartbeat) || 0);
      default: return String(app[key] || "").toLowerCase();
    }
  }

  function renderApps() {
    const query = $("apps-filter").value.trim().toLowerCase();
    const wanted = $("apps-status").value;
    const { key, dir } = state.appSort;
    const apps = [...state.apps.values()].filter((app) => {
      if (wanted && app.status !== wanted) return false;
      if (!query) return true;
      return [app.name, app.router_type, app.version, app.app_id].some((v) => String(v || "").toLowerCase().includes(query));
    });
    apps.sort((a, b) => {
      const x = appSortValue(a, key);
      const y = appSortValue(b, key);
      if (x < y) return -dir;
      if (x > y) return dir;
      return String(a.app_id).localeCompare(String(b.app_id));
    });
    const rows = apps.map((app) => {
      const row = appRow(app);
      const c = row.cells_;
      setText(c.name, app.name);
      setText(c.router, app.router_type || "—");
      setText(c.version, app.version || "—");
      setBadge(c.badge, app.status);
      const cls = app.status === "stale" ? "app-stale" : "app-active";
      if (!row.classList.contains(cls)) {
        row.classList.remove("app-stale", "app-active");
        row.classList.add(cls);
      }
      const keys = app.metadata && typeof app.metadata === "object" ? Object.keys(app.metadata).length : 0;
      setText(c.summary, keys + (keys === 1 ? " key" : " keys"));
      if (c.details.open) setText(c.pre, JSON.stringify(app.metadata || {}, null, 2));
      return row;
    });
    for (const [id, row] of appRows) {
      if (!state.apps.has(id)) {
        row.remove();
        appRows.delete(id);
      }
    }
    replaceRowsIfChanged($("apps-body"), rows,
      state.apps.size ? "No application matches the filter." : "No applications registered yet.", 7);
    tickApps();
    const total = Math.max(state.appsTotal, state.apps.size);
    setText($("apps-summary"), (rows.length === state.apps.size ? "" : rows.length + " shown of ") + total + " registered");
  }

  function tickApps() {
    const now = serverNow();
    for (const [id, row] of appRows) {
      const app = state.apps.get(id);
      if (!app || !row.isConnected) continue;
      setText(row.cells_.uptime, fmtSpan(now - app.start_time));
      setText(row.cells_.seen, fmtAge(now - app.last_heartbeat));
    }
  }

  const scheduleApps = throttle(renderApps, 200);

  function onAppSamples(message) {
    for (const [appId, lastHeartbeat] of message.apps || []) {
      const app = state.apps.get(appId);
      if (app) app.last_heartbeat = lastHeartbeat;
    }
    scheduleApps();
  }

  function onAppEvent(message) {
    if (message.type === "samples") {
      onAppSamples(message);
      return;
    }
    if (message.type === "app_unregistered" || message.type === "app_removed") {
      if (state.apps.delete(message.app_id)) state.appsTotal = Math.max(0, state.appsTotal - 1);
    } else if (message.app_id) {
      if (!state.apps.has(message.app_id)) state.appsTotal += 1;
      const app = {};
      for (const field of ["app_id", "name", "router_type", "version", "status", "start_time", "last_heartbeat", "metadata"]) {
        if (field in message) app[field] = message[field];
      }
      state.apps.set(message.app_id, Object.assign(state.apps.get(message.app_id) || {}, app));
    }
    scheduleApps();
    renderHealth();
    addFeed(message, "applications");
  }


  function bindAppsControls() {
    $("apps-filter").addEventListener("input", scheduleApps);
    $("apps-status").addEventListener("change", renderApps);
    for (const button of document.querySelectorAll("#apps-table th button[data-sort]")) {
      button.addEventListener("click", () => {
        const key = button.dataset.sort;
        state.appSort = { key, dir: state.appSort.key === key ? -state.appSort.dir : 1 };
        for (const th of document.querySelectorAll("#apps-table th")) th.removeAttribute("aria-sort");
        button.parentElement.setAttribute("aria-sort", state.appSort.dir > 0 ? "ascending" : "descending");
        renderApps();
      });
    }
  }

  // ---------------------------------------------------------------- activity feed

  const KINDS = { nodes: "nodes", backends: "backends", applications: "applications", ollama_activity: "models" };

  function feedLink(message, stream) {
    if (stream === "applications" && message.app_id) {
      return el("a", { href: "#app-" + encodeURIComponent(message.app_id), text: message.name || message.app_id,
        onclick: (event) => { event.preventDefault(); showApp(message.app_id); } });
    }
    let nodeId = message.node_id;
    if (nodeId === undefined && (stream === "ollama_activity" || stream === "nodes")) {
      for (const node of state.nodes.values()) {
        if (node.address === message.node || node.url === message.node || node.url === message.node_url) nodeId = node.id;
      }
    }
    if (nodeId !== undefined && nodeId !== null) {
      const label = message.node || message.node_url || "node " + nodeId;
      return el("a", { href: "#node-" + encodeURIComponent(nodeId), text: label,
        onclick: (event) => { event.preventDefault(); openNode(nodeId, event.currentTarget); } });
    }
    if (stream === "frameworks") {
      const name = message.framework === "ray" || message.framework === "dask" ? message.framework : null;
      const target = name ? "framework-" + name : "frameworks";
      return el("a", { href: "#" + target, text: name ? FRAMEWORK_TITLES[name] + " panel" : "Ray & Dask panel",
        onclick: (event) => {
          event.preventDefault();
          $(target).scrollIntoView({ block: "center" });
          flash($(target));
        } });
    }
    if (stream === "backends" && message.backend_id !== undefined) {
      return el("a", { href: "#backend-" + encodeURIComponent(message.backend_id), text: message.backend || "backend" });
    }
    return null;
  }

  function showApp(appId) {
    $("apps-filter").value = "";
    $("apps-status").value = "";
    renderApps();
    const row = appRows.get(appId);
    if (row) {
      row.scrollIntoView({ block: "center" });
      flash(row);
    }
  }

  function feedItem(message, stream) {
    const kind = KINDS[stream] || stream;
    const link = feedLink(message, stream);
    const item = el("li", { dataset: { kind, id: String(message.id), type: message.type } },
      el("time", { datetime: new Date((num(message.timestamp) || 0) * 1000).toISOString(), text: fmtClock(message.timestamp) }),
      el("span", { className: "kind badge", text: kind }),
      el("span", { className: "msg", text: message.message || message.type }),
      link);
    const wanted = $("feed-kind").value;
    if (wanted && wanted !== kind) item.hidden = true;
    return item;
  }

  function addFeed(message, stream) {
    const id = num(message.id);
    if (id === null || state.feedIds.has(id)) return;
    state.feedIds.add(id);
    const list = $("feed");
    const item = feedItem(message, stream);
    // Newest first; replayed events may arrive after newer ones of another stream.
    let before = list.firstElementChild;
    while (before && Number(before.dataset.id) > id) before = before.nextElementSibling;
    list.insertBefore(item, before);
    while (list.children.length > FEED_MAX) {
      const last = list.lastElementChild;
      state.feedIds.delete(Number(last.dataset.id));
      last.remove();
    }
  }

  function bindFeedControls() {
    $("feed-kind").addEventListener("change", () => {
      const wanted = $("feed-kind").value;
      for (const item of $("feed").children) item.hidden = Boolean(wanted) && item.dataset.kind !== wanted;
    });
  }

  // ---------------------------------------------------------------- metrics

  function renderMetrics(data) {
    const totals = (data && data.totals) || {};
    const latency = totals.latency_ms || {};
    const stats = $("metrics-totals");
    const stat = (name, value) => el("div", null, el("dt", { text: name }), el("dd", { text: value }));
    stats.replaceChildren(
      stat("Requests", totals.requests === undefined ? "—" : String(totals.requests)),
      stat("Success rate", fmtPct(totals.success_rate)),
      stat("p50", fmtMs(latency.p50)),
      stat("p95", fmtMs(latency.p95)),
      stat("p99", fmtMs(latency.p99)),
      stat("Tokens/s", num(totals.tokens_per_second) === null ? "—" : totals.tokens_per_second.toFixed(1)),
    );
    setText($("metrics-note"), data && data.note ? data.note : "");
    fillBreakdown($("metrics-nodes").tBodies[0], (data && data.per_node) || [], "node");
    fillBreakdown($("metrics-models").tBodies[0], (data && data.per_model) || [], "model");
    renderChart(data);
  }

  function fillBreakdown(tbody, rows, label) {
    if (!rows.length) {
      tbody.replaceChildren(el("tr", null, el("td", { colspan: 6, className: "muted", text: "No requests reported in this window." })));
      return;
    }
    tbody.replaceChildren(...rows.map((row) => {
      const l = row.latency_ms || {};
      return el("tr", null, el("td", { text: row[label] }), el("td", { className: "num", text: row.requests }),
        el("td", { className: "num", text: fmtPct(row.success_rate) }), el("td", { className: "num", text: fmtMs(l.p50) }),
        el("td", { className: "num", text: fmtMs(l.p95) }), el("td", { className: "num", text: fmtMs(l.p99) }));
    }));
  }

  /** Show one answer of /api/metrics: its numbers, its breakdowns, its series. */
  function showMetrics(data) {
    state.metrics = data;
    renderMetrics(data);
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  // Told apart by name, dash pattern and marker shape as well as by colour.
  const PERCENTILES = [
    { key: "p50", name: "p50 (median)", marker: "circle" },
    { key: "p95", name: "p95", marker: "square" },
    { key: "p99", name: "p99", marker: "diamond" },
  ];

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
    const width = Math.max(300, Math.round(box.clientWidth) || 600);
    const height = 170, left = 48, right = 8, bottom = 20, top = 8;
    const root = svg("svg", { viewBox: "0 0 " + width + " " + height, preserveAspectRatio: "none", "aria-hidden": "true" });
    root.append(svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom }));
    root.append(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }));
    const label = (text, attrs) => {
      const node = svg("text", attrs);
      node.textContent = text;
      root.append(node);
    };
    const latency = (bucket, key) => num((bucket.latency_ms || {})[key]);
    const values = series.flatMap((b) => PERCENTILES.map((p) => latency(b, p.key))).filter((v) => v !== null);
    const windowText = $("metrics-window").selectedOptions[0] ? $("metrics-window").selectedOptions[0].textContent : "";
    if (!values.length) {
      label("No requests reported in this window", { x: left + 10, y: height / 2 });
      box.replaceChildren(root);
      box.setAttribute("aria-label", "Latency percentiles over the last " + windowText + ": no requests reported");
      return;
    }
    const max = Math.max(...values) * 1.1 || 1;
    const t0 = num(data.since) !== null ? data.since : series[0].start;
    const t1 = num(data.until) !== null ? data.until : series[series.length - 1].end;
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
        title.textContent = fmtClock(bucket.start) + "–" + fmtClock(bucket.end) + " · " + p.key + " " + fmtMs(value) +
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
    label(fmtClock(t0), { x: left, y: height - 4 });
    label(fmtClock(t1), { x: width - right, y: height - 4, "text-anchor": "end" });
    box.replaceChildren(root);
    const totals = (data.totals && data.totals.latency_ms) || {};
    box.setAttribute("aria-label", "Latency percentiles over the last " + windowText + ", in " + series.length +
      " steps of " + fmtSpan(data.bucket_seconds) + ": p50 " + fmtMs(totals.p50) + ", p95 " + fmtMs(totals.p95) +
      ", p99 " + fmtMs(totals.p99) + " over the window");
  }

  const refreshMetrics = throttle(async () => {
    const wanted = $("metrics-window").value;
    let data;
    try {
      data = await getJson("/api/metrics?window=" + encodeURIComponent(wanted));
    } catch (_) {
      return; /* keep what is shown */
    }
    if ($("metrics-window").value === wanted) showMetrics(data);
  }, 2000);

  /** The server's metrics clock (a sample every few seconds): re-read a window
   * that moved on, or that a newer request than it holds would change. */
  function onMetricsTick(tick) {
    const shown = state.metrics;
    const at = num(tick.at);
    if (!shown || at === null) return;
    const until = num(shown.until) || 0;
    const newest = num(tick.last_request);
    const holdsRequests = (num(shown.totals && shown.totals.requests) || 0) > 0;
    const step = Math.max(1, num(shown.bucket_seconds) || 0);
    if ((newest !== null && newest > until) || (holdsRequests && at - until >= step)) refreshMetrics();
  }

  function onActivityEvent(message) {
    if (message.type === "samples") {
      // Spans make no events: a sample names the traces that just got some.
      if (Array.isArray(message.traces) && message.traces.length) refreshTraces();
      if (message.metrics && typeof message.metrics === "object") onMetricsTick(message.metrics);
      return;
    }
    if (message.type === "model_loaded" || message.type === "model_unloaded") refreshNodes();
    if (message.source === "reported") {
      refreshMetrics();
      refreshTraces();
    }
    addFeed(message, "ollama_activity");
  }

  // ---------------------------------------------------------------- traces

  function renderTraces() {
    const body = $("traces-body");
    if (!state.traces.length) {
      body.replaceChildren(el("tr", null, el("td", { colspan: 6, className: "muted", text: "No traces yet." })));
      return;
    }
    body.replaceChildren(...state.traces.map((trace) => {
      const open = () => openTrace(trace.trace_id);
      const row = el("tr", { className: "clickable", tabindex: "0", dataset: { key: trace.trace_id } },
        el("td", { title: trace.trace_id, text: trace.root_name || trace.trace_id.slice(0, 12) }),
        el("td", { text: trace.root_service || (trace.services || []).join(", ") }),
        el("td", { className: "num", text: fmtMs(trace.duration_ms) }),
        el("td", { className: "num", text: trace.span_count }),
        el("td", null, badge(trace.error ? "error" : "ok", trace.error ? trace.error_count + " error(s)" : "ok")),
        el("td", { text: fmtClock(trace.start) }));
      row.addEventListener("click", open);
      row.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          open();
        }
      });
      return row;
    }));
  }

  const refreshTraces = throttle(async () => {
    try {
      state.traces = (await getJson("/api/traces?limit=25")).traces || [];
    } catch (_) {
      return;
    }
    renderTraces();
  }, 1000);

  async function openTrace(traceId) {
    const box = $("waterfall");
    box.hidden = false;
    box.replaceChildren(el("p", { className: "muted", text: "Loading trace…" }));
    let tree;
    try {
      tree = await getJson("/api/traces/" + encodeURIComponent(traceId));
    } catch (error) {
      box.replaceChildren(el("p", { text: "Could not load the trace: " + error.message }));
      return;
    }
    const start = tree.start;
    const total = Math.max(1e-6, tree.end - tree.start);
    const rows = [];
    const walk = (span, depth) => {
      // A failed span says so in words, not only in red.
      const failed = span.status === "error";
      const status = failed ? "error" + (span.status_message ? ": " + span.status_message : "") : span.status || "unset";
      const title = span.service + " · " + span.name + " · " + fmtMs(span.duration_ms) + " · status " + status;
      const mark = el("span", { className: failed ? "error" : "", title });
      mark.style.left = ((span.start - start) / total) * 100 + "%";
      mark.style.width = Math.max(0.2, ((span.end - span.start) / total) * 100) + "%";
      const name = el("div", { className: "span-name", title },
        "\u00a0".repeat(depth * 2) + span.name + " ",
        failed ? el("span", { className: "badge status-error span-status", text: "error" }) : null,
        failed ? " " : null,
        el("span", { className: "muted", text: fmtMs(span.duration_ms) }));
      rows.push(el("div", { className: "span-row" + (failed ? " span-failed" : ""), dataset: { status: span.status || "unset" } },
        name, el("div", { className: "span-track" }, mark)));
      for (const child of span.children || []) walk(child, depth + 1);
    };
    for (const span of tree.spans || []) walk(span, 0);
    box.replaceChildren(
      el("h3", { text: (tree.root_name || "trace") + " · " + fmtMs(tree.duration_ms) + " · " + tree.span_count + " spans" +
        (tree.truncated ? " (truncated)" : "") }),
      ...rows,
    );
  }

  // ---------------------------------------------------------------- logs

  function logPasses(line) {
    const level = Number($("logs-level").value) || 0;
    if (level && (LEVELS[line.level] || 0) < level) return false;
    const app = $("logs-app").value;
    if (app && line.app_id !== app) return false;
    const query = $("logs-search").value.trim().toLowerCase();
    if (query && !(String(line.message) + " " + String(line.logger)).toLowerCase().includes(query)) return false;
    return true;
  }

  function logItem(line) {
    return el("li", { dataset: { id: String(line.id) } },
      el("time", { text: fmtClock(line.timestamp) }),
      el("span", { className: "level level-" + String(line.level).replace(/[^A-Z]/g, ""), text: line.level }),
      el("span", { className: "logger", text: line.logger || "" }),
      line.app_id ? el("span", { className: "app", text: "[" + appLabel(line.app_id) + "]" }) : null,
      el("span", { className: "text", text: line.message }));
  }

  function appLabel(appId) {
    const app = state.apps.get(appId);
    return app ? app.name : appId;
  }

  const knownLogApps = new Set();

  function noteLogApp(appId) {
    if (!appId || knownLogApps.has(appId)) return;
    knownLogApps.add(appId);
    $("logs-app").append(el("option", { value: appId, text: appLabel(appId) }));
  }

  function appendLogs(lines) {
    const list = $("logs-list");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const fragment = document.createDocumentFragment();
    for (const line of lines) {
      if (num(line.id) === null || state.logIds.has(line.id)) continue;
      state.logIds.add(line.id);
      state.logs.push(line);
      noteLogApp(line.app_id);
      if (logPasses(line)) fragment.append(logItem(line));
    }
    list.append(fragment);
    while (state.logs.length > LOGS_MAX) {
      const old = state.logs.shift();
      state.logIds.delete(old.id);
    }
    while (list.children.length > LOGS_MAX) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function rerenderLogs() {
    const list = $("logs-list");
    list.replaceChildren(...state.logs.filter(logPasses).map(logItem));
    list.scrollTop = list.scrollHeight;
  }

  function onLogMessage(message) {
    const lines = message.type === "log_batch" ? message.lines || [] : message.type === "log" ? [message] : [];
    if (state.logsPaused) {
      // Hold at most what the list shows: the oldest held lines make way.
      state.logsHeld.push(...lines);
      const over = state.logsHeld.length - LOGS_MAX;
      if (over > 0) {
        state.logsHeld.splice(0, over);
        state.logsDropped += over;
      }
      setText($("logs-state"), "paused · " + state.logsHeld.length + " new" +
        (state.logsDropped ? " · " + state.logsDropped + " older dropped" : ""));
      return;
    }
    appendLogs(lines);
  }

  function bindLogControls() {
    const rerender = throttle(rerenderLogs, 150);
    $("logs-level").addEventListener("change", rerenderLogs);
    $("logs-app").addEventListener("change", rerenderLogs);
    $("logs-search").addEventListener("input", rerender);
    const pause = $("logs-pause");
    pause.addEventListener("click", () => {
      state.logsPaused = !state.logsPaused;
      pause.setAttribute("aria-pressed", String(state.logsPaused));
      setText(pause, state.logsPaused ? "Resume" : "Pause");
      if (!state.logsPaused) {
        const held = state.logsHeld;
        const dropped = state.logsDropped;
        state.logsHeld = [];
        state.logsDropped = 0;
        appendLogs(held);
        setText($("logs-state"), dropped ? dropped + " lines dropped while paused (GET /api/logs has them)" : "");
      } else {
        setText($("logs-state"), "paused");
      }
    });
  }

  // ---------------------------------------------------------------- Ray and Dask

  const FRAMEWORKS = ["ray", "dask"];
  const FRAMEWORK_TITLES = { ray: "Ray", dask: "Dask" };
  // What a sample may change in a framework's answer (the rest comes with a fetch).
  const FRAMEWORK_SAMPLE_FIELDS = ["status", "collected_at", "duration_ms", "error", "warnings", "resources",
    "tasks", "jobs", "actors", "nodes_total", "nodes_alive", "workers_total", "ray_version", "dask_version"];
  // Per framework: its last answer (kept current by samples), whether this server
  // collects it (false after a 404), and the fetch retries after a failure.
  const frameworks = {};
  for (const name of FRAMEWORKS) {
    frameworks[name] = { data: null, available: null, attempts: 0, retry: null, historyMax: 60, note: null };
  }
  let frameworkStream = null;

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

  function renderFramework(name, data) {
    const box = $("framework-" + name);
    // The panel is rebuilt with each sample: a keyboard user keeps their place.
    const active = box.contains(document.activeElement) ? document.activeElement : null;
    const refocus = active ? (active.tagName === "A" ? "a" : active.tagName === "BUTTON" ? "button" : null) : null;
    const title = name === "ray" ? "Ray" : "Dask";
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
      parts.push(el("p", null, open, " ", embed));
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
  function frameworkNote(name, text) {
    frameworks[name].note = text;
    const box = $("framework-" + name);
    let note = box.querySelector(".fw-state");
    if (!note) {
      note = el("p", { className: "muted fw-state", role: "status" });
      box.insertBefore(note, box.querySelector("h3") ? box.querySelector("h3").nextSibling : box.firstChild);
    }
    setText(note, text);
  }

  async function loadFramework(name) {
    const fw = frameworks[name];
    clearTimeout(fw.retry);
    fw.retry = null;
    try {
      const data = await getJson("/api/" + name + "/metrics");
      fw.available = true;
      fw.attempts = 0;
      fw.note = null;
      fw.data = data;
      fw.historyMax = Math.max(60, Array.isArray(data.history) ? data.history.length : 0);
      renderFramework(name, data);
    } catch (error) {
      if (error.status === 404) {
        fw.available = false;
        $("framework-" + name).replaceChildren(el("h3", { text: FRAMEWORK_TITLES[name] }),
          el("p", { className: "muted", text: "This server does not collect " + FRAMEWORK_TITLES[name] + " metrics." }));
        if (FRAMEWORKS.every((n) => frameworks[n].available === false) && frameworkStream) frameworkStream.close();
        return;
      }
      // A 503 while the database is away, a dropped connection: try again, less
      // often each time; the stream's events and samples go on meanwhile.
      fw.attempts += 1;
      const delay = Math.min(30000, 1000 * 2 ** Math.min(fw.attempts - 1, 5));
      frameworkNote(name, "Could not load the metrics (" + error.message + "); trying again in " +
        Math.round(delay / 1000) + " s.");
      fw.retry = setTimeout(() => loadFramework(name), delay);
    }
  }

  const refreshFrameworks = throttle(() => {
    for (const name of FRAMEWORKS) if (frameworks[name].available !== false) loadFramework(name);
  }, 2000);

  /** Each collection's numbers, pushed by the server: no event, no fetch. */
  function onFrameworkSamples(message) {
    for (const sample of Array.isArray(message.frameworks) ? message.frameworks : []) {
      const fw = sample && frameworks[sample.framework];
      if (!fw || !fw.data || fw.available === false) continue;
      const data = fw.data;
      for (const key of FRAMEWORK_SAMPLE_FIELDS) if (key in sample) data[key] = sample[key];
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

  function onFrameworkEvent(message) {
    if (message.type === "samples") {
      onFrameworkSamples(message);
      return;
    }
    refreshFrameworks();
    addFeed(message, "frameworks");
  }

  /** Mark numbers as old once no collection has arrived for a while (a clock, no request). */
  function tickFrameworks() {
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

  function startFrameworks() {
    // The page came with both answers (links on the host this page was loaded from).
    const given = snap.frameworks || {};
    for (const name of FRAMEWORKS) {
      const data = given[name];
      if (!data || typeof data !== "object") continue;
      frameworks[name].data = data;
      frameworks[name].historyMax = Math.max(60, Array.isArray(data.history) ? data.history.length : 0);
      renderFramework(name, data);
    }
    // Subscribe, then fetch once subscribed (and after each reconnect): no change
    // falls in between. Samples keep the numbers current from then on.
    const since = (snap.watermarks || {}).frameworks;
    frameworkStream = new Stream("frameworks", "/ws/frameworks", num(since), onFrameworkEvent, {
      params: { samples: "1" },
      onOpen: () => refreshFrameworks(),
    });
    frameworkStream.connect();
  }

  // ---------------------------------------------------------------- start

  function start() {
    const marks = snap.watermarks || {};
    // Subscribe first: each stream resumes after the snapshot's watermark.
    new Stream("nodes", "/ws/network/nodes", marks.nodes || 0, onNodeEvent, {
      params: { samples: "1" },
    }).connect();
    new Stream("backends", "/ws/network/backends", marks.backends || 0, onBackendEvent).connect();
    new Stream("applications", "/ws/applications", marks.applications || 0, onAppEvent, {
      params: { samples: "1" },
    }).connect();
    // Samples here: the traces that got spans, and the clock of the metrics window.
    // Samples are not replayed, so the trace list is read again once subscribed.
    new Stream("activity", "/ws/ollama_activity", marks.ollama_activity || 0, onActivityEvent, {
      params: { samples: "1" },
      onOpen: () => refreshTraces(),
    }).connect();
    new Stream("logs", "/ws/logs", marks.logs || 0, onLogMessage, { params: { batch: "1" } }).connect();

    // The server rendered the snapshot's nodes, backends and applications into
    // the page; the first paint shows them. The live tables take over from them
    // just after that paint, so building them does not delay it.
    for (const event of (snap.feed || []).slice().reverse()) addFeed(event, event.stream);
    appendLogs(snap.logs || []);
    // The chart is drawn from the series the server rendered into the page.
    if (snap.metrics) renderMetrics(snap.metrics);
    renderConnection();
    requestAnimationFrame(() =>
      setTimeout(() => {
        renderNodes();
        renderBackends();
        renderApps();
        renderHealth();
        renderTraces();
        document.body.dataset.live = "true";
      }, 0),
    );

    bindAppsControls();
    bindFeedControls();
    bindLogControls();
    $("metrics-window").addEventListener("change", refreshMetrics);
    // A browser that restored another choice of window than the page's 5 min.
    if (snap.metrics && $("metrics-window").value !== "5m") refreshMetrics();
    $("traces-refresh").addEventListener("click", refreshTraces);
    $("drawer-close").addEventListener("click", () => $("drawer").close());
    $("drawer").addEventListener("close", () => {
      if (drawerReturn && drawerReturn.isConnected) drawerReturn.focus();
    });

    startFrameworks();

    setInterval(() => {
      tickApps();
      tickNodes();
      tickFrameworks();
    }, 1000);
    document.body.dataset.ready = "true";
  }

  start();
})();
