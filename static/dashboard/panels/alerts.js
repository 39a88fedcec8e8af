/* Alerts: the count in the header and the panel of open alerts (subject, rule,
 * since when, value, silenced or acknowledged), the active silences, and any
 * channel that fails to take notifications. Read again whenever /ws/alerts says
 * something changed (an alert, a silence).
 *
 * A viewer who may write (no tokens configured, or a staff user's session: the
 * snapshot's `can_write`) acknowledges a firing alert, silences one (or any rule
 * and subject, by glob) with who and why, and ends a silence. */

import { refresher, sendJson } from "../api.js";
import { $, badge, el, fmtAge, fmtClock, RowCache, setBadge, setText, showRows } from "../dom.js";
import { serverNow, snap } from "../state.js";

let overview = snap.alerts || { alerts: [], firing: 0, pending: 0, silenced: 0, silences: [], channels_failing: [] };
const canWrite = Boolean(snap.can_write);
const WHO = "sollol.who";

function note(alert) {
  const parts = [];
  if (alert.silenced) parts.push("silenced");
  if (alert.acked_by) parts.push("acknowledged by " + alert.acked_by);
  return parts.join(" · ");
}

function value(alert) {
  if (typeof alert.value !== "number") return "—";
  return Number.isInteger(alert.value) ? String(alert.value) : alert.value.toFixed(3);
}

// Rows kept per alert and updated in place: the panel is drawn again every
// second (the ages), and a button replaced under the pointer loses its click.
const rows = new RowCache((id) => {
  const cells = Array.from({ length: 7 }, () => el("td"));
  cells[2].append(badge("unknown"));
  cells[3].append(badge("unknown"));
  cells[5].className = "num";
  const actions = el("td", { className: "actions" });
  if (canWrite) {
    actions.append(
      el("button", { type: "button", className: "action", dataset: { action: "ack", alert: id }, text: "Acknowledge" }),
      el("button", { type: "button", className: "action", dataset: { action: "silence", alert: id }, text: "Silence…" }));
  }
  return el("tr", { dataset: { key: id } }, ...cells, actions);
});

function showAlert(alert, now) {
  const row = rows.row(String(alert.id));
  row.dataset.state = alert.state;
  const [subject, rule, severity, state, since, shown, said, actions] = row.children;
  setText(subject, alert.subject);
  const labelled = labelText(alert.labels);
  subject.title = (alert.message || "") + (labelled ? "\nlabels: " + labelled : "");
  setText(rule, alert.rule);
  setBadge(severity.firstElementChild, alert.severity);
  setBadge(state.firstElementChild, alert.state);
  setText(since, fmtAge(now - (alert.fired_at || alert.started_at)));
  setText(shown, value(alert));
  setText(said, note(alert));
  if (canWrite) {
    actions.children[0].hidden = alert.state !== "firing" || Boolean(alert.acked_by);
    actions.children[1].hidden = Boolean(alert.silenced);
  }
  return row;
}

const silenceRows = new RowCache((id) => {
  const words = el("span");
  const end = canWrite ? el("button", { type: "button", className: "action", dataset: { action: "unsilence", silence: id }, text: "End" }) : null;
  return el("li", { dataset: { key: id } }, words, end ? " " : null, end);
});

function showSilence(silence) {
  const item = silenceRows.row(String(silence.id));
  const picked = labelText(silence.labels);
  const what = (silence.rule || "any rule") + " · " + (silence.subject || "any subject") +
    (picked ? " · " + picked : "");
  setText(item.firstElementChild, what + " until " + fmtClock(silence.ends_at) +
    ", by " + silence.created_by + ": " + silence.comment);
  return item;
}

export function renderAlerts() {
  const count = $("alerts-count");
  const firing = overview.firing || 0;
  setText(count, firing + " firing");
  count.className = "badge " + (firing ? "status-critical" : "status-healthy");
  $("alerts-head").dataset.firing = String(firing);
  setText($("alerts-summary"), firing + " firing · " + (overview.pending || 0) + " pending" +
    (overview.silenced ? " · " + overview.silenced + " silenced" : ""));
  const now = serverNow();
  const listed = overview.alerts || [];
  rows.keepOnly(new Set(listed.map((alert) => String(alert.id))));
  showRows($("alerts-body"), listed.map((alert) => showAlert(alert, now)), "No alerts: every rule is quiet.", 8);
  const silences = overview.silences || [];
  silenceRows.keepOnly(new Set(silences.map((s) => String(s.id))));
  $("silences").hidden = silences.length === 0;
  const list = $("silences-list");
  const items = silences.map(showSilence);
  if (items.length !== list.children.length || items.some((item, i) => list.children[i] !== item)) {
    list.replaceChildren(...items);
  }
  const failing = overview.channels_failing || [];
  const channels = $("alerts-channels");
  channels.hidden = failing.length === 0;
  setText(channels, failing.map((c) => "Channel " + c.name + " fails to take notifications: " + c.error).join(" · "));
}

export const refreshAlerts = refresher("/api/alerts", (data) => {
  overview = data;
  renderAlerts();
}, 500);

export function onAlertMessage() {
  refreshAlerts();
}

// --- what a viewer does -----------------------------------------------------------

function who() {
  return snap.user || localStorage.getItem(WHO) || "";
}

function showError(message) {
  const error = $("alerts-error");
  error.hidden = !message;
  setText(error, message || "");
}

async function act(method, path, body) {
  try {
    await sendJson(method, path, body);
    showError("");
    refreshAlerts();
    return true;
  } catch (error) {
    showError("Not done: " + error.message);
    return false;
  }
}

/* Labels as people write them: "rack=b*, env=prod" (the API checks the names). */
function labelText(labels) {
  return Object.entries(labels || {}).map(([name, value]) => name + "=" + value).join(", ");
}

function parseLabels(written) {
  const labels = {};
  for (const pair of written.split(",")) {
    if (!pair.trim()) continue;
    const at = pair.indexOf("=");
    const name = (at < 0 ? pair : pair.slice(0, at)).trim();
    labels[name] = at < 0 ? "*" : pair.slice(at + 1).trim();
  }
  return labels;
}

function openSilenceForm(rule, subject) {
  const form = $("silence-form");
  form.elements.rule.value = rule || "";
  form.elements.subject.value = subject || "";
  form.elements.labels.value = "";
  form.elements.created_by.value = who();
  form.hidden = false;
  form.elements.comment.focus();
}

function findAlert(id) {
  return (overview.alerts || []).find((alert) => String(alert.id) === id);
}

function onClick(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const { action } = button.dataset;
  if (action === "ack") {
    const by = who() || window.prompt("Acknowledged by (your name):") || "";
    if (!by.trim()) return;
    localStorage.setItem(WHO, by.trim());
    act("POST", "/api/alerts/" + encodeURIComponent(button.dataset.alert) + "/ack", { by: by.trim() });
  } else if (action === "silence") {
    const alert = findAlert(button.dataset.alert);
    if (alert) openSilenceForm(alert.rule, alert.subject);
  } else if (action === "unsilence") {
    act("DELETE", "/api/alerts/silences/" + encodeURIComponent(button.dataset.silence));
  }
}

async function onSubmit(event) {
  event.preventDefault();
  const form = event.target;
  const body = {
    rule: form.elements.rule.value.trim(),
    subject: form.elements.subject.value.trim(),
    labels: parseLabels(form.elements.labels.value),
    duration_seconds: Number(form.elements.duration_seconds.value),
    created_by: form.elements.created_by.value.trim(),
    comment: form.elements.comment.value.trim(),
  };
  localStorage.setItem(WHO, body.created_by);
  if (await act("POST", "/api/alerts/silences", body)) {
    form.hidden = true;
    form.elements.comment.value = "";
  }
}

export function startAlerts() {
  if (!canWrite) return;
  $("silence-new").hidden = false;
  $("silence-new").addEventListener("click", () => openSilenceForm("", ""));
  $("silence-cancel").addEventListener("click", () => { $("silence-form").hidden = true; });
  $("silence-form").addEventListener("submit", onSubmit);
  $("alerts").addEventListener("click", onClick);
}
