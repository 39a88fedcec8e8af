/* DOM helpers and formatters shared by the panels.
 *
 * Every value that came over the network goes in with textContent, or as an
 * attribute value of our own choosing: nothing here parses HTML.
 */

const SVG_NS = "http://www.w3.org/2000/svg";

export const $ = (id) => document.getElementById(id);

/** Create an element; text and children are always inserted as text nodes. */
export function el(tag, props, ...children) {
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

/** Create an SVG element with these attributes. */
export function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

export function setText(node, value) {
  const text = value === null || value === undefined ? "" : String(value);
  if (node.textContent !== text) node.textContent = text;
}

function statusClass(status) {
  return "badge status-" + String(status || "unknown").replace(/[^a-z_]/gi, "");
}

export function badge(status, label) {
  return el("span", { className: statusClass(status), text: label || status || "unknown" });
}

export function setBadge(span, status) {
  const cls = statusClass(status);
  if (span.className !== cls) span.className = cls;
  setText(span, status || "unknown");
}

/** Return an http(s) URL as a string, or null: never a javascript: link. */
export function safeUrl(value) {
  if (typeof value !== "string" || !value) return null;
  try {
    const url = new URL(value, location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (_) {
    return null;
  }
}

export const num = (value) => (typeof value === "number" && isFinite(value) ? value : null);

export function fmtMs(value) {
  const ms = num(value);
  if (ms === null) return "—";
  if (ms >= 10000) return (ms / 1000).toFixed(1) + " s";
  return (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1)) + " ms";
}

export function fmtBytes(value) {
  const bytes = num(value);
  if (bytes === null) return "—";
  if (bytes >= 2 ** 30) return (bytes / 2 ** 30).toFixed(1) + " GB";
  if (bytes >= 2 ** 20) return (bytes / 2 ** 20).toFixed(0) + " MB";
  return bytes.toFixed(0) + " B";
}

export function fmtAge(seconds) {
  const s = num(seconds);
  if (s === null) return "—";
  if (s < 1) return "just now";
  if (s < 90) return Math.floor(s) + " s ago";
  if (s < 5400) return Math.floor(s / 60) + " min ago";
  if (s < 172800) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " d ago";
}

export function fmtSpan(seconds) {
  let s = num(seconds);
  if (s === null) return "—";
  s = Math.max(0, s);  // a span the page's clock estimate has not reached yet
  if (s < 60) return Math.floor(s) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (Math.floor(s) % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + (Math.floor(s / 60) % 60) + " min";
  return Math.floor(s / 86400) + " d " + (Math.floor(s / 3600) % 24) + " h";
}

export function fmtClock(ts) {
  const t = num(ts);
  return t === null ? "—" : new Date(t * 1000).toLocaleTimeString();
}

export function fmtPct(value) {
  const v = num(value);
  return v === null ? "—" : (v * 100).toFixed(1) + " %";
}

// The page's beat: what the streams and the API bring is drawn a few times a
// second, all of it in one task, so the browser lays out and paints one frame per
// beat rather than one per message (at 100 events a second, each frame's fixed
// cost was most of the main thread).
const BEAT_MS = 500;
const due = new Set();
let beatTimer = null;
let lastBeat = 0;

function runBeat() {
  beatTimer = null;
  lastBeat = Date.now();
  // What a beat's work schedules (a render after a stream's messages) runs in it too.
  for (let rounds = 0; due.size && rounds < 10; rounds++) {
    const work = [...due];
    due.clear();
    for (const fn of work) {
      try {
        fn();
      } catch (error) {
        console.error(error);
      }
    }
  }
  // Work that kept scheduling more past the rounds waits for the next beat.
  if (due.size && !beatTimer) beatTimer = setTimeout(runBeat, BEAT_MS);
}

/** Run `fn` at the page's next beat (at most BEAT_MS from now), once however often
 * it was asked for meanwhile. */
export function onBeat(fn) {
  due.add(fn);
  if (!beatTimer) beatTimer = setTimeout(runBeat, Math.max(0, lastBeat + BEAT_MS - Date.now()));
}

/** Run fn at most once per `ms`, with a trailing call for what came meanwhile. */
export function throttle(fn, ms) {
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

/** A horizontal bar filled to `fraction`, described by `label` for screen readers. */
export function bar(fraction, label) {
  const inner = el("span");
  inner.style.width = Math.max(0, Math.min(1, fraction || 0)) * 100 + "%";
  return el("div", { className: "bar", role: "img", "aria-label": label }, inner);
}

export function sparkline(values) {
  const root = svg("svg", { class: "spark", viewBox: "0 0 70 18", "aria-hidden": "true" });
  root.append(svg("polyline"));
  updateSparkline(root, values);
  return root;
}

export function updateSparkline(root, values) {
  const points = values.filter((v) => num(v) !== null);
  const line = root.firstChild;
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

/** One name and value of a `dl.stats`: a value that is no element is text. */
export function stat(name, value) {
  return el("div", null, el("dt", { text: name }), el("dd", null, value));
}

/** Draw the eye to a row or a panel that just changed. */
export function flash(node) {
  node.classList.remove("flash");
  void node.offsetWidth; // restart the animation
  node.classList.add("flash");
}

/** Call `open` on a click, and on Enter or Space for a keyboard user. */
export function onActivate(node, open) {
  node.addEventListener("click", open);
  node.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      open();
    }
  });
}

/** Show `rows` in a table body, or one row that says `emptyText`; touch the DOM
 * only when something changed, so kept rows keep their focus and open details. */
export function showRows(body, rows, emptyText, columns) {
  if (!rows.length) {
    const shown = body.children.length === 1 && body.firstElementChild.classList.contains("empty");
    if (shown) setText(body.firstElementChild.firstElementChild, emptyText);
    else body.replaceChildren(el("tr", { className: "empty" }, el("td", { colspan: columns, className: "muted", text: emptyText })));
    return;
  }
  const current = body.children;
  let same = current.length === rows.length;
  for (let i = 0; same && i < rows.length; i++) same = current[i] === rows[i];
  if (!same) body.replaceChildren(...rows);
}

/** Table rows kept per key and updated in place, built once by `build(key)`. */
export class RowCache {
  constructor(build) {
    this.build = build;
    this.rows = new Map();
  }

  row(key) {
    let row = this.rows.get(key);
    if (!row) {
      row = this.build(key);
      this.rows.set(key, row);
    }
    return row;
  }

  get(key) {
    return this.rows.get(key);
  }

  /** Drop the rows whose key `known` no longer has. */
  keepOnly(known) {
    for (const [key, row] of this.rows) {
      if (!known.has(key)) {
        row.remove();
        this.rows.delete(key);
      }
    }
  }

  [Symbol.iterator]() {
    return this.rows.entries();
  }
}

/** Whether `node` is in (or near) the reader's view, kept by one IntersectionObserver;
 * `onShown` runs each time it comes into view. A panel out of view skips the
 * work of keeping its rows current (the ages that tick every second, a page of
 * rows redrawn at every beat) and catches up when the reader scrolls to it. */
export function watchInView(node, onShown) {
  const watch = { inView: true };
  new IntersectionObserver((entries) => {
    const was = watch.inView;
    watch.inView = entries.some((entry) => entry.isIntersecting);
    if (watch.inView && !was) onShown();
  }, { rootMargin: "200px" }).observe(node);
  return watch;
}

/** One page of a long table at a time: only that page's rows are built and kept
 * in the DOM, so 10,000 applications cost what 100 do. The controls ("‹" "›" and
 * "101–200 of 10,000") go in `nav`, and hide while everything fits on one page.
 * `onTurn` renders the table again after the reader turned a page. */
export class Pager {
  constructor(nav, size, onTurn) {
    this.size = size;
    this.page = 0;
    this.count = 0;
    this.nav = nav;
    this.label = el("span", { className: "muted", "aria-live": "polite" });
    const turn = (by) => () => {
      this.page += by;
      onTurn();
    };
    this.previous = el("button", { type: "button", text: "‹ Previous", onclick: turn(-1) });
    this.next = el("button", { type: "button", text: "Next ›", onclick: turn(1) });
    nav.replaceChildren(this.previous, this.label, this.next);
    nav.hidden = true;
  }

  /** The items of `list` on the current page (kept within the list's pages). */
  slice(list) {
    this.count = list.length;
    const last = Math.max(0, Math.ceil(list.length / this.size) - 1);
    this.page = Math.min(Math.max(0, this.page), last);
    const start = this.page * this.size;
    const end = Math.min(list.length, start + this.size);
    this.nav.hidden = list.length <= this.size;
    if (!this.nav.hidden) {
      setText(this.label, (start + 1).toLocaleString() + "–" + end.toLocaleString() + " of " + list.length.toLocaleString());
      this.previous.disabled = this.page === 0;
      this.next.disabled = this.page === last;
    }
    return list.slice(start, end);
  }

  /** Turn to the page that holds the item at `index` of the list. */
  showIndex(index) {
    if (index >= 0) this.page = Math.floor(index / this.size);
  }
}
