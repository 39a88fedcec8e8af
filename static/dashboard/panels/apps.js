/* The applications table: sortable, filterable, stale rows marked. An app's
 * status (active or stale) is the server's; the page only ages "last seen". */

import { $, badge, el, flash, fmtAge, fmtSpan, num, RowCache, setBadge, setText, showRows, throttle } from "../dom.js";
import { serverNow, state } from "../state.js";
import { sampleRows } from "../streams.js";

const FIELDS = ["app_id", "name", "router_type", "version", "status", "start_time", "last_heartbeat", "metadata"];
let sort = { key: "name", dir: 1 };

const rows = new RowCache((appId) => {
  const cells = {
    name: el("td"),
    router: el("td"),
    version: el("td"),
    status: el("td"),
    uptime: el("td", { className: "num" }),
    seen: el("td"),
    meta: el("td"),
  };
  cells.badge = badge("unknown");
  cells.status.append(cells.badge);
  cells.summary = el("summary");
  cells.pre = el("pre");
  cells.details = el("details", null, cells.summary, cells.pre);
  cells.details.addEventListener("toggle", () => {
    if (cells.details.open) showMetadata(cells, state.apps.get(appId));
  });
  cells.meta.append(cells.details);
  const row = el("tr", { id: "app-" + appId, dataset: { key: appId } },
    cells.name, cells.router, cells.version, cells.status, cells.uptime, cells.seen, cells.meta);
  row.cells_ = cells;
  return row;
});

function showMetadata(cells, app) {
  setText(cells.pre, JSON.stringify((app && app.metadata) || {}, null, 2));
}

function sortValue(app, key) {
  switch (key) {
    case "uptime": return -(num(app.start_time) || 0);
    case "last_seen": return -(num(app.last_heartbeat) || 0);
    default: return String(app[key] || "").toLowerCase();
  }
}

export function renderApps() {
  const query = $("apps-filter").value.trim().toLowerCase();
  const wanted = $("apps-status").value;
  const { key, dir } = sort;
  const apps = [...state.apps.values()].filter((app) => {
    if (wanted && app.status !== wanted) return false;
    if (!query) return true;
    return [app.name, app.router_type, app.version, app.app_id].some((v) => String(v || "").toLowerCase().includes(query));
  });
  apps.sort((a, b) => {
    const x = sortValue(a, key);
    const y = sortValue(b, key);
    if (x < y) return -dir;
    if (x > y) return dir;
    return String(a.app_id).localeCompare(String(b.app_id));
  });
  const shown = apps.map((app) => {
    const row = rows.row(app.app_id);
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
    if (c.details.open) showMetadata(c, app);
    return row;
  });
  rows.keepOnly(state.apps);
  showRows($("apps-body"), shown, state.apps.size ? "No application matches the filter." : "No applications registered yet.", 7);
  tickApps();
  const total = Math.max(state.appsTotal, state.apps.size);
  setText($("apps-summary"), (shown.length === state.apps.size ? "" : shown.length + " shown of ") + total + " registered");
}

/** Let uptime and "last seen" age with the clock. */
export function tickApps() {
  const now = serverNow();
  for (const [id, row] of rows) {
    const app = state.apps.get(id);
    if (!app || !row.isConnected) continue;
    setText(row.cells_.uptime, fmtSpan(now - app.start_time));
    setText(row.cells_.seen, fmtAge(now - app.last_heartbeat));
  }
}

const scheduleApps = throttle(renderApps, 200);

/** Heartbeats that changed nothing, pushed by the server: no event, no fetch. */
export function onAppSamples(message) {
  for (const sample of sampleRows(message, "apps")) {
    const app = state.apps.get(sample.app_id);
    if (app && "last_heartbeat" in sample) app.last_heartbeat = sample.last_heartbeat;
  }
  scheduleApps();
}

export function onAppEvent(message) {
  if (message.type === "app_unregistered" || message.type === "app_removed") {
    if (state.apps.delete(message.app_id)) state.appsTotal = Math.max(0, state.appsTotal - 1);
  } else if (message.app_id) {
    if (!state.apps.has(message.app_id)) state.appsTotal += 1;
    const app = state.apps.get(message.app_id) || {};
    for (const field of FIELDS) if (field in message) app[field] = message[field];
    state.apps.set(message.app_id, app);
  }
  scheduleApps();
}

/** Show one application: clear the filters, scroll to its row and flash it. */
export function showApp(appId) {
  $("apps-filter").value = "";
  $("apps-status").value = "";
  renderApps();
  const row = rows.get(appId);
  if (row) {
    row.scrollIntoView({ block: "center" });
    flash(row);
  }
}

export function bindAppsControls() {
  $("apps-filter").addEventListener("input", scheduleApps);
  $("apps-status").addEventListener("change", renderApps);
  for (const button of document.querySelectorAll("#apps-table th button[data-sort]")) {
    button.addEventListener("click", () => {
      const key = button.dataset.sort;
      sort = { key, dir: sort.key === key ? -sort.dir : 1 };
      for (const th of document.querySelectorAll("#apps-table th")) th.removeAttribute("aria-sort");
      button.parentElement.setAttribute("aria-sort", sort.dir > 0 ? "ascending" : "descending");
      renderApps();
    });
  }
}
