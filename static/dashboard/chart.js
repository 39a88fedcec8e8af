/* A small line chart of time series: a gap where a point has no value, one SVG
 * per draw, every label set as text. Used by the history panel and the node
 * drawer; the request chart (panels/metrics.js) has its own markers. */

import { fmtClock, num, svg } from "./dom.js";

/** A time on a chart, with its date when the chart spans more than a day. */
export function stamp(ts, withDate) {
  const t = num(ts);
  return withDate && t !== null ? new Date(t * 1000).toLocaleString() : fmtClock(ts);
}

/** An empty chart as wide as `box`: its SVG with both axes, its margins, and
 * `label(text, attrs)` to write text on it. */
export function chartFrame(box, height) {
  const width = Math.max(300, Math.round(box.clientWidth) || 600);
  const left = 48, right = 8, bottom = 20, top = 8;
  const root = svg("svg", { viewBox: "0 0 " + width + " " + height, preserveAspectRatio: "none", "aria-hidden": "true" });
  root.append(svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom }));
  root.append(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }));
  const label = (text, attrs) => {
    const node = svg("text", attrs);
    node.textContent = text;
    root.append(node);
  };
  return { root, label, width, height, left, right, bottom, top };
}

/** Draw `lines` ([{key, name, values: [[t, v], ...]}]) from `since` to `until`
 * into `box`, values formatted with `format`; `max` fixes the top (else the
 * highest value). Returns how many points were drawn. */
export function lineChart(box, { since, until, lines, format, max: top, empty }) {
  const { root, label, width, height, left, right, bottom, top: pad } = chartFrame(box, 150);
  const values = lines.flatMap((line) => line.values.map(([, v]) => num(v)).filter((v) => v !== null));
  if (!values.length) {
    label(empty || "Nothing measured in this range", { x: left + 10, y: height / 2 });
    box.replaceChildren(root);
    return 0;
  }
  const max = num(top) !== null ? top : Math.max(...values) * 1.1 || 1;
  const days = until - since > 86400;
  const x = (t) => left + ((t - since) / (until - since || 1)) * (width - left - right);
  const y = (v) => height - bottom - (Math.min(v, max) / max) * (height - bottom - pad);
  let drawn = 0;
  for (const line of lines) {
    const group = svg("g", { class: "series line-" + line.key, "data-series": line.key });
    let d = "";
    let run = []; // the points of the segment being drawn
    // A point with no neighbour makes no line: it is drawn as a dot.
    const endRun = () => {
      if (run.length === 1) group.append(svg("circle", { class: "marker", cx: run[0][0], cy: run[0][1], r: 2.5 }));
      run = [];
    };
    for (const [t, v] of line.values) {
      const value = num(v);
      if (value === null || num(t) === null) {
        endRun();
        continue;
      }
      const px = x(t).toFixed(1), py = y(value).toFixed(1);
      d += (run.length ? " L" : " M") + px + " " + py;
      run.push([px, py]);
      drawn += 1;
    }
    endRun();
    const path = svg("path", { class: "line", d: d.trim() });
    const title = svg("title");
    title.textContent = line.name;
    path.append(title);
    group.append(path);
    root.append(group);
  }
  label(format(max), { x: 2, y: pad + 10 });
  label(format(0), { x: 2, y: height - bottom });
  label(stamp(since, days), { x: left, y: height - 4 });
  label(stamp(until, days), { x: width - right, y: height - 4, "text-anchor": "end" });
  box.replaceChildren(root);
  return drawn;
}
