/* The live log tail: level, app and text filters, and a pause that holds at most
 * a screenful of new lines and says how many older ones it dropped. */

import { $, el, fmtClock, num, setText, throttle, watchInView } from "../dom.js";
import { state } from "../state.js";

const LOGS_MAX = 1000;
const LEVELS = { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50 };

const lines = []; // what the list may show, oldest first, at most LOGS_MAX
const lineIds = new Set();
const appsSeen = new Set(); // the app filter's options
let paused = false;
let held = [];
let dropped = 0;
// Whether the reader is at the list's bottom, known from scroll events: asking
// the list (scrollHeight) after adding lines would lay out the page at every
// batch, a few times a second on a busy fleet.
// Scrolling needs the list laid out: while it is out of view (the panel is not
// rendered then) the scroll waits until it comes into view.
let atBottom = true;
let scrollQueued = false;
let view = { inView: true };

function followBottom() {
  if (scrollQueued || !view.inView) return;
  scrollQueued = true;
  requestAnimationFrame(() => {
    scrollQueued = false;
    const list = $("logs-list");
    if (atBottom && view.inView) list.scrollTop = list.scrollHeight;
  });
}

function passes(line) {
  const level = Number($("logs-level").value) || 0;
  if (level && (LEVELS[line.level] || 0) < level) return false;
  const app = $("logs-app").value;
  if (app && line.app_id !== app) return false;
  const query = $("logs-search").value.trim().toLowerCase();
  if (query && !(String(line.message) + " " + String(line.logger)).toLowerCase().includes(query)) return false;
  return true;
}

function appLabel(appId) {
  const app = state.apps.get(appId);
  return app ? app.name : appId;
}

function logItem(line) {
  return el("li", { dataset: { id: String(line.id) } },
    el("time", { text: fmtClock(line.timestamp) }),
    el("span", { className: "level level-" + String(line.level).replace(/[^A-Z]/g, ""), text: line.level }),
    el("span", { className: "logger", text: line.logger || "" }),
    line.app_id ? el("span", { className: "app", text: "[" + appLabel(line.app_id) + "]" }) : null,
    el("span", { className: "text", text: line.message }));
}

function noteApp(appId) {
  if (!appId || appsSeen.has(appId)) return;
  appsSeen.add(appId);
  $("logs-app").append(el("option", { value: appId, text: appLabel(appId) }));
}

/** Add lines not shown yet, keeping the list at LOGS_MAX and at its bottom if it was. */
export function appendLogs(added) {
  const list = $("logs-list");
  const fragment = document.createDocumentFragment();
  for (const line of added) {
    if (num(line.id) === null || lineIds.has(line.id)) continue;
    lineIds.add(line.id);
    lines.push(line);
    noteApp(line.app_id);
    if (passes(line)) fragment.append(logItem(line));
  }
  list.append(fragment);
  if (lines.length > LOGS_MAX) {
    for (const old of lines.splice(0, lines.length - LOGS_MAX)) lineIds.delete(old.id);
  }
  while (list.children.length > LOGS_MAX) list.firstElementChild.remove();
  if (atBottom) followBottom();
}

function rerender() {
  const list = $("logs-list");
  list.replaceChildren(...lines.filter(passes).map(logItem));
  atBottom = true;
  followBottom();
}

export function onLogMessage(message) {
  const added = message.type === "log_batch" ? message.lines || [] : message.type === "log" ? [message] : [];
  if (!paused) {
    appendLogs(added);
    return;
  }
  // Hold at most what the list shows: the oldest held lines make way.
  held.push(...added);
  const over = held.length - LOGS_MAX;
  if (over > 0) {
    held.splice(0, over);
    dropped += over;
  }
  setText($("logs-state"), "paused · " + held.length + " new" + (dropped ? " · " + dropped + " older dropped" : ""));
}

export function bindLogControls() {
  const list = $("logs-list");
  list.addEventListener("scroll", () => {
    atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }, { passive: true });
  view = watchInView(list, () => {
    if (atBottom) followBottom();
  });
  $("logs-level").addEventListener("change", rerender);
  $("logs-app").addEventListener("change", rerender);
  $("logs-search").addEventListener("input", throttle(rerender, 150));
  const pause = $("logs-pause");
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    setText(pause, paused ? "Resume" : "Pause");
    if (paused) {
      setText($("logs-state"), "paused");
      return;
    }
    const wasDropped = dropped;
    const release = held;
    held = [];
    dropped = 0;
    appendLogs(release);
    setText($("logs-state"), wasDropped ? wasDropped + " lines dropped while paused (GET /api/logs has them)" : "");
  });
}
