/* The header: the fleet's health as the server judged it, with its reason, and
 * the counts of nodes, backends and applications by status. */

import { refresher } from "../api.js";
import { $, onBeat, setBadge, setText } from "../dom.js";
import { state } from "../state.js";

export function renderHealth() {
  const health = state.health;
  if (!health) return;
  $("health").dataset.status = health.status;
  setBadge($("health-status"), health.status);
  setText($("health-reason"), health.reason || (health.status === "healthy" ? "all nodes and backends answer" : ""));
  // Counting the statuses the server gave is display, not a verdict: the counts
  // follow each event and sample at once, before the health is read again. One
  // pass over each list (10,000 apps are normal), once per beat (scheduleHealth).
  const tally = (map) => {
    const counts = Object.create(null);
    for (const item of map.values()) counts[item.status] = (counts[item.status] || 0) + 1;
    return (status) => counts[status] || 0;
  };
  const nodes = tally(state.nodes);
  const unknown = nodes("unknown");
  const notFound = nodes("not_found");
  setText(
    $("count-nodes"),
    nodes("healthy") + " healthy · " + nodes("degraded") + " degraded · " +
      (nodes("unhealthy") + nodes("offline")) + " down" + (unknown ? " · " + unknown + " unknown" : "") +
      (notFound ? " · " + notFound + " not found" : ""),
  );
  const backends = tally(state.backends);
  const incompatible = backends("incompatible");
  const backendsNotFound = backends("not_found");
  setText(
    $("count-backends"),
    backends("online") + " online · " + backends("busy") + " busy · " + backends("offline") +
      " offline" + (incompatible ? " · " + incompatible + " incompatible" : "") +
      (backendsNotFound ? " · " + backendsNotFound + " not found" : ""),
  );
  const shown = state.apps.size;
  const active = tally(state.apps)("active");
  const total = Math.max(state.appsTotal, shown);
  setText($("count-apps"), active + " active · " + (shown - active) + " stale" +
    (total > shown ? " (" + total + " registered)" : ""));
}

/** Count again at the page's next beat, however many events asked meanwhile. */
export const scheduleHealth = () => onBeat(renderHealth);

/** Read the fleet's health again (after a node or backend event). */
export const refreshHealth = refresher("/api/network/health", (health) => {
  state.health = health;
  renderHealth();
}, 1000);
