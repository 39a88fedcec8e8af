/* The applications table: sortable, filterable, stale rows marked, one page of
 * rows at a time (10,000 apps are normal). An app's status (active or stale) is
 * the server's; the page only ages "last seen". */

import { getAllPages } from "../api.js";
import { $, badge, el, flash, fmtAge, fmtSpan, num, onBeat, Pager, RowCache, setBadge, setText, showRows, watchInView } from "../dom.js";
import { pageRows, serverNow, state } from "../state.js";
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

// The filtered, sorted list is worked out again only when something it depends
// on changed (an app came or went, a field it filters or sorts on, the filter,
// the sort): a heartbeat that changes metadata re-renders one page of rows, not
// 10,000 apps.
const ORDER_FIELDS = ["name", "router_type", "version", "status", "app_id", "start_time"];
let ordered = null;
const searchText = new Map(); // app_id -> what the filter looks in, lower case
let pager = null;
const removedWhileLoading = new Set();
let loading = false;

function searchOf(app) {
  let text = searchText.get(app.app_id);
  if (text === undefined) {
    text = [app.name, app.router_type, app.version, app.app_id].map((v) => String(v || "").toLowerCase()).join("\u0000");
    searchText.set(app.app_id, text);
  }
  return text;
}

function orderApps() {
  const query = $("apps-filter").value.trim().toLowerCase();
  const wanted = $("apps-status").value;
  const { key, dir } = sort;
  const keyed = [];
  for (const app of state.apps.values()) {
    if (wanted && app.status !== wanted) continue;
    if (query && !searchOf(app).includes(query)) continue;
    keyed.push([sortValue(app, key), String(app.app_id), app]);
  }
  keyed.sort((a, b) => (a[0] < b[0] ? -dir : a[0] > b[0] ? dir : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return keyed.map((entry) => entry[2]);
}

function orderChanged() {
  ordered = null;
}

let view = null;
let behind = false; // changes came while the table was out of view

function pages() {
  if (!pager) {
    pager = new Pager($("apps-pager"), pageRows("applications"), () => renderApps());
    view = watchInView($("apps-table"), () => {
      if (behind) renderApps();
    });
  }
  return pager;
}

/** Render the page of applications the reader is on (rows of other pages are not
 * kept); out of view, only note that it is behind, unless `now` says draw anyway. */
export function renderApps(now = false) {
  pages();
  if (!ordered) ordered = orderApps();
  const total = Math.max(state.appsTotal, state.apps.size);
  setText($("apps-summary"), (ordered.length === state.apps.size ? "" : ordered.length + " shown of ") + total + " registered");
  if (!view.inView && now !== true) {
    behind = true;
    return;
  }
  behind = false;
  const page = pages().slice(ordered);
  const shown = page.map((app) => {
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
  rows.keepOnly(new Set(page.map((app) => app.app_id)));
  showRows($("apps-body"), shown, state.apps.size ? "No application matches the filter." : "No applications registered yet.", 7);
  tickApps();
}

/** Read every registered app after first paint when the page came with only some
 * (the snapshot carries the first SNAPSHOT_APPLICATIONS by name), so filtering and
 * sorting see them all. Apps the streams told of meanwhile keep what they said;
 * apps they removed stay removed. */
export async function loadAllApps() {
  if (loading || state.apps.size >= state.appsTotal) return;
  loading = true;
  removedWhileLoading.clear();
  let data;
  try {
    data = await getAllPages("/api/applications", "applications", 500);
  } catch (_) {
    return;  // the table shows what it has; a reload reads them again
  } finally {
    loading = false;
  }
  for (const app of data.applications || []) {
    if (removedWhileLoading.has(app.app_id)) continue;
    const known = state.apps.get(app.app_id);
    state.apps.set(app.app_id, known ? Object.assign(app, known) : app);
  }
  removedWhileLoading.clear();
  state.appsTotal = Math.max(num(data.total) || 0, state.apps.size);
  searchText.clear();
  orderChanged();
  renderApps();
}

/** Let uptime and "last seen" age with the clock. */
export function tickApps() {
  if (view && !view.inView) return;
  const now = serverNow();
  for (const [id, row] of rows) {
    const app = state.apps.get(id);
    if (!app || !row.isConnected) continue;
    setText(row.cells_.uptime, fmtSpan(now - app.start_time));
    setText(row.cells_.seen, fmtAge(now - app.last_heartbeat));
  }
}

const scheduleApps = () => onBeat(renderApps);

/** Heartbeats that changed nothing, pushed by the server: no event, no fetch. */
export function onAppSamples(message) {
  for (const sample of sampleRows(message, "apps")) {
    const app = state.apps.get(sample.app_id);
    if (app && "last_heartbeat" in sample) app.last_heartbeat = sample.last_heartbeat;
  }
  if (sort.key === "last_seen") orderChanged();
  scheduleApps();
}

export function onAppEvent(message) {
  const id = message.app_id;
  if (message.type === "app_unregistered" || message.type === "app_removed") {
    if (state.apps.delete(id)) state.appsTotal = Math.max(0, state.appsTotal - 1);
    if (loading) removedWhileLoading.add(id);
    searchText.delete(id);
    orderChanged();
  } else if (id) {
    let app = state.apps.get(id);
    if (!app) {
      // New to the server, or only to this page (not read yet): counted once.
      if (message.type === "app_registered" || (!loading && state.apps.size >= state.appsTotal)) state.appsTotal += 1;
      app = {};
      state.apps.set(id, app);
      orderChanged();
    }
    for (const field of FIELDS) {
      if (!(field in message) || app[field] === message[field]) continue;
      if (ORDER_FIELDS.includes(field) || (field === "last_heartbeat" && sort.key === "last_seen")) {
        searchText.delete(id);
        orderChanged();
      }
      app[field] = message[field];
    }
  }
  scheduleApps();
}

/** Show one application: clear the filters, turn to its page, scroll to its row
 * and flash it. */
export function showApp(appId) {
  $("apps-filter").value = "";
  $("apps-status").value = "";
  orderChanged();
  ordered = orderApps();
  pages().showIndex(ordered.findIndex((app) => app.app_id === appId));
  renderApps(true); // the table may be out of view yet: its row is scrolled to now
  const row = rows.get(appId);
  if (row) {
    row.scrollIntoView({ block: "center" });
    flash(row);
  }
}

/** Filter and sort at once: with the list kept in order between changes, this
 * costs one pass over the apps and one page of rows. */
function refilter() {
  orderChanged();
  pages().page = 0;
  renderApps();
}

export function bindAppsControls() {
  $("apps-filter").addEventListener("input", refilter);
  $("apps-status").addEventListener("change", refilter);
  for (const button of document.querySelectorAll("#apps-table th button[data-sort]")) {
    button.addEventListener("click", () => {
      const key = button.dataset.sort;
      sort = { key, dir: sort.key === key ? -sort.dir : 1 };
      for (const th of document.querySelectorAll("#apps-table th")) th.removeAttribute("aria-sort");
      button.parentElement.setAttribute("aria-sort", sort.dir > 0 ? "ascending" : "descending");
      orderChanged();
      renderApps();
    });
  }
}
