/* The activity feed: every stream's events, newest first, each linked to what it
 * is about. Opening a node or showing an app is the caller's (see init). */

import { $, el, flash, fmtClock, num } from "../dom.js";
import { state } from "../state.js";

const FEED_MAX = 300;
const KINDS = { nodes: "nodes", backends: "backends", applications: "applications", ollama_activity: "models" };
const FRAMEWORK_TITLES = { ray: "Ray", dask: "Dask" };

// The server's event messages start with an emoji ("✅ New node discovered"); where
// no emoji font is installed they show as boxes. The feed says what an event is
// with its kind badge and text, so the pictographs are left out.
const PICTOGRAPHS = /[\p{Extended_Pictographic}\uFE0F\u200D]+\s*/gu;

/** An event's message as the feed shows it: its words, without pictographs. */
export function feedText(message) {
  const text = typeof message.message === "string" ? message.message : "";
  return text.replace(PICTOGRAPHS, "").trim() || message.type;
}

const shownIds = new Set();
let openNode = () => {};
let showApp = () => {};

/** `openNode(id, returnFocusTo)` and `showApp(appId)` follow the feed's links. */
export function init(callbacks) {
  ({ openNode, showApp } = callbacks);
}

function link(href, text, follow) {
  return el("a", { href, text, onclick: (event) => {
    event.preventDefault();
    follow(event);
  } });
}

// Node ids by address and URL: model events name their node by address, and a
// busy fleet sends many (1,000 nodes are normal). Built again when it misses.
let nodeIndex = new Map();

function indexNodes() {
  nodeIndex = new Map();
  for (const node of state.nodes.values()) {
    if (node.address) nodeIndex.set(node.address, node.id);
    if (node.url) nodeIndex.set(node.url, node.id);
  }
}

function nodeIdOf(message, stream) {
  if (message.node_id !== undefined) return message.node_id;
  if (stream !== "ollama_activity" && stream !== "nodes") return undefined;
  const names = [message.node, message.node_url].filter((name) => typeof name === "string" && name);
  const lookup = () => names.map((name) => nodeIndex.get(name)).find((id) => id !== undefined && state.nodes.has(id));
  let found = lookup();
  if (found === undefined && names.length) {
    indexNodes();
    found = lookup();
  }
  return found;
}

function feedLink(message, stream) {
  if (stream === "applications" && message.app_id) {
    return link("#app-" + encodeURIComponent(message.app_id), message.name || message.app_id, () => showApp(message.app_id));
  }
  const nodeId = nodeIdOf(message, stream);
  if (nodeId !== undefined && nodeId !== null) {
    return link("#node-" + encodeURIComponent(nodeId), message.node || message.node_url || "node " + nodeId,
      (event) => openNode(nodeId, event.currentTarget));
  }
  if (stream === "frameworks") {
    const name = message.framework === "ray" || message.framework === "dask" ? message.framework : null;
    const target = name ? "framework-" + name : "frameworks";
    return link("#" + target, name ? FRAMEWORK_TITLES[name] + " panel" : "Ray & Dask panel", () => {
      $(target).scrollIntoView({ block: "center" });
      flash($(target));
    });
  }
  if (stream === "backends" && message.backend_id !== undefined) {
    return el("a", { href: "#backend-" + encodeURIComponent(message.backend_id), text: message.backend || "backend" });
  }
  return null;
}

function feedItem(message, stream) {
  const kind = KINDS[stream] || stream;
  const item = el("li", { dataset: { kind, id: String(message.id), type: message.type } },
    el("time", { datetime: new Date((num(message.timestamp) || 0) * 1000).toISOString(), text: fmtClock(message.timestamp) }),
    el("span", { className: "kind badge", text: kind }),
    el("span", { className: "msg", text: feedText(message) }),
    feedLink(message, stream));
  const wanted = $("feed-kind").value;
  if (wanted && wanted !== kind) item.hidden = true;
  return item;
}

/** Add an event of `stream` once, in id order (replays may come after newer ones). */
export function addFeed(message, stream) {
  const id = num(message.id);
  if (id === null || shownIds.has(id)) return;
  shownIds.add(id);
  const list = $("feed");
  let before = list.firstElementChild;
  while (before && Number(before.dataset.id) > id) before = before.nextElementSibling;
  list.insertBefore(feedItem(message, stream), before);
  while (list.children.length > FEED_MAX) {
    const last = list.lastElementChild;
    shownIds.delete(Number(last.dataset.id));
    last.remove();
  }
}

export function bindFeedControls() {
  $("feed-kind").addEventListener("change", () => {
    const wanted = $("feed-kind").value;
    for (const item of $("feed").children) item.hidden = Boolean(wanted) && item.dataset.kind !== wanted;
  });
}
