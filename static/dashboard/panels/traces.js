/* The recent traces, read again when spans arrive (a sample names the traces that
 * got some), and the waterfall of the one opened. */

import { getJson, refresher } from "../api.js";
import { $, badge, el, fmtClock, fmtMs, onActivate, showRows } from "../dom.js";
import { snap } from "../state.js";

let traces = snap.traces || [];

export function renderTraces() {
  showRows($("traces-body"), traces.map((trace) => {
    const row = el("tr", { className: "clickable", tabindex: "0", dataset: { key: trace.trace_id } },
      el("td", { title: trace.trace_id, text: trace.root_name || trace.trace_id.slice(0, 12) }),
      el("td", { text: trace.root_service || (trace.services || []).join(", ") }),
      el("td", { className: "num", text: fmtMs(trace.duration_ms) }),
      el("td", { className: "num", text: trace.span_count }),
      el("td", null, badge(trace.error ? "error" : "ok", trace.error ? trace.error_count + " error(s)" : "ok")),
      el("td", { text: fmtClock(trace.start) }));
    onActivate(row, () => openTrace(trace.trace_id));
    return row;
  }), "No traces yet.", 6);
}

export const refreshTraces = refresher("/api/traces?limit=25", (data) => {
  traces = data.traces || [];
  renderTraces();
}, 1000);

export function bindTraceControls() {
  $("traces-refresh").addEventListener("click", refreshTraces);
}

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
