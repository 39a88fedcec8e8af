/* SOLLOL dashboard: renders the server's snapshot at once, then follows the streams.
 *
 * Rules the page keeps (every module under static/dashboard/):
 * - Every value that came over the network is shown with textContent (or as an
 *   attribute value of our own choosing); nothing is ever parsed as HTML: no
 *   innerHTML, no insertAdjacentHTML.
 * - The snapshot in the page carries, per stream, the id of the newest event read
 *   before the state was: each WebSocket resumes after it (?since=), so nothing
 *   that changes between the page's render and the socket's opening is lost, and
 *   a reconnect resumes after the last id received (streams.js).
 * - No periodic reloads or polling: values that are no events (per-probe
 *   latency, quiet heartbeats, each Ray/Dask collection's numbers, the traces
 *   that got spans, the metrics window's clock) arrive as "samples" on the node,
 *   application, framework and activity streams (?samples=1). The API is read
 *   again only when a stream says something changed.
 * - Verdicts are the server's: whether a node or backend answers (`usable`),
 *   whether a node's loaded models are known, an application's status, the
 *   fleet's health. The page shows them and does not re-derive them.
 * - Plain ES modules from this server, no build step: the Content-Security-Policy
 *   allows scripts from 'self' only.
 *
 * This module wires them: which stream feeds which panel, the first paint, the
 * clock that ages "last seen". Panels do not import each other; what one needs of
 * another comes as a callback from here.
 */

import { num, onBeat } from "./dom.js";
import { snap } from "./state.js";
import { renderConnection, Stream } from "./streams.js";
import * as alerts from "./panels/alerts.js";
import * as apps from "./panels/apps.js";
import * as backends from "./panels/backends.js";
import { bindDrawer, openNode } from "./panels/drawer.js";
import * as feed from "./panels/feed.js";
import * as frameworks from "./panels/frameworks.js";
import { refreshHealth, renderHealth, scheduleHealth } from "./panels/health.js";
import * as history from "./panels/history.js";
import * as logs from "./panels/logs.js";
import * as metrics from "./panels/metrics.js";
import * as nodes from "./panels/nodes.js";
import * as traces from "./panels/traces.js";

/** A node or backend changed: count it now, and read the fleet's health again. */
function fleetChanged() {
  scheduleHealth();
  refreshHealth();
}

function onNodeMessage(message) {
  if (message.type === "samples") {
    nodes.onNodeSamples(message);
    return;
  }
  nodes.onNodeEvent(message);
  fleetChanged();
  feed.addFeed(message, "nodes");
}

function onBackendMessage(message) {
  backends.onBackendEvent(message);
  fleetChanged();
  feed.addFeed(message, "backends");
}

function onAppMessage(message) {
  if (message.type === "samples") {
    apps.onAppSamples(message);
    return;
  }
  apps.onAppEvent(message);
  scheduleHealth();
  feed.addFeed(message, "applications");
}

function onActivityMessage(message) {
  if (message.type === "samples") {
    // Spans make no events: a sample names the traces that just got some.
    if (Array.isArray(message.traces) && message.traces.length) traces.refreshTraces();
    if (message.metrics && typeof message.metrics === "object") {
      metrics.onMetricsTick(message.metrics);
      if (num(message.metrics.at) !== null) history.onTick(message.metrics.at);
    }
    return;
  }
  if (message.type === "model_loaded" || message.type === "model_unloaded") nodes.refreshNodes();
  if (message.source === "reported") {
    metrics.refreshMetrics();
    traces.refreshTraces();
  }
  feed.addFeed(message, "ollama_activity");
}

function onFrameworkMessage(message) {
  if (message.type === "samples") {
    frameworks.onFrameworkSamples(message);
    return;
  }
  frameworks.refreshFrameworks();
  feed.addFeed(message, "frameworks");
}

function onAlertMessage(message) {
  alerts.onAlertMessage(message);
  feed.addFeed(message, "alerts");
}

function start() {
  const marks = snap.watermarks || {};
  nodes.init({ onChange: scheduleHealth, openNode });
  backends.init({ onChange: scheduleHealth });
  feed.init({ openNode, showApp: apps.showApp });
  alerts.startAlerts();

  // Subscribe first: each stream resumes after the snapshot's watermark. Events
  // come batched (?batch=1: what arrives within 0.2 s in one message): a busy
  // fleet's hundred events a second are a few messages, not a hundred.
  const live = { samples: "1", batch: "1" };
  new Stream("nodes", "/ws/network/nodes", marks.nodes || 0, onNodeMessage, { params: live }).connect();
  new Stream("backends", "/ws/network/backends", marks.backends || 0, onBackendMessage, {
    params: { batch: "1" },
  }).connect();
  new Stream("applications", "/ws/applications", marks.applications || 0, onAppMessage, { params: live }).connect();
  // Samples here: the traces that got spans, and the clock of the metrics window.
  // Samples are not replayed, so the trace list is read again once subscribed.
  new Stream("activity", "/ws/ollama_activity", marks.ollama_activity || 0, onActivityMessage, {
    params: live,
    onOpen: () => traces.refreshTraces(),
  }).connect();
  new Stream("alerts", "/ws/alerts", marks.alerts || 0, onAlertMessage, { params: { batch: "1" } }).connect();
  new Stream("logs", "/ws/logs", marks.logs || 0, logs.onLogMessage, { params: { batch: "1" } }).connect();

  // The server rendered the snapshot's nodes, backends and applications into
  // the page; the first paint shows them. The live tables take over from them
  // just after that paint, so building them does not delay it.
  for (const event of (snap.feed || []).slice().reverse()) feed.addFeed(event, event.stream);
  logs.appendLogs(snap.logs || []);
  // The chart is drawn from the series the server rendered into the page.
  metrics.startMetrics();
  // Kept series: the fleet's charts, availability, the nodes' recent latencies.
  history.startHistory({ onRange: metrics.setWindow });
  nodes.loadLatencies();
  renderConnection();
  requestAnimationFrame(() =>
    setTimeout(() => {
      nodes.renderNodes();
      backends.renderBackends();
      apps.renderApps();
      renderHealth();
      traces.renderTraces();
      alerts.renderAlerts();
      document.body.dataset.live = "true";
      // The snapshot carries the first applications by name; the rest are read now.
      apps.loadAllApps();
    }, 0),
  );

  apps.bindAppsControls();
  feed.bindFeedControls();
  logs.bindLogControls();
  traces.bindTraceControls();
  bindDrawer({ range: history.currentRange });

  // The page came with both frameworks' answers. Subscribe, then fetch once
  // subscribed (and after each reconnect): no change falls in between. Samples
  // keep the numbers current from then on.
  const frameworkStream = new Stream("frameworks", "/ws/frameworks", num(marks.frameworks), onFrameworkMessage, {
    params: live,
    onOpen: () => frameworks.refreshFrameworks(),
  });
  frameworks.startFrameworks({ whenNoneCollected: () => frameworkStream.close() });
  frameworkStream.connect();

  // Ages tick once a second, drawn with the beat's other changes.
  const tick = () => {
    apps.tickApps();
    nodes.tickNodes();
    frameworks.tickFrameworks();
    alerts.renderAlerts(); // "since" ages
  };
  setInterval(() => onBeat(tick), 1000);
  document.body.dataset.ready = "true";
}

start();
