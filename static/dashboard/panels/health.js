/* The header: the fleet's health as the server judged it, with its reason, and
 * the counts of nodes, backends and applications by status. */

import { refresher } from "../api.js";
import { $, setBadge, setText } from "../dom.js";
import { state } from "../state.js";

export function renderHealth() {
  const health = state.health;
  if (!health) return;
  $("health").dataset.status = health.status;
  setBadge($("health-status"), health.status);
  setText($("health-reason"), health.reason || (health.status === "healthy" ? "all nodes and backends answer" : ""));
  // Counting the statuses the server gave is display, not a verdict: the counts
  // follow each event and sample at once, before the health is read again.
  const count = (map, status) => {
    let n = 0;
    for (const item of map.values()) if (item.status === status) n += 1;
    return n;
  };
  const nodes = state.nodes;
  const unknown = count(nodes, "unknown");
  const notFound = count(nodes, "not_found");
  setText(
    $("count-nodes"),
    count(nodes, "healthy") + " healthy · " + count(nodes, "degraded") + " degraded · " +
      (count(nodes, "unhealthy") + count(nodes, "offline")) + " down" + (unknown ? " · " + unknown + " unknown" : "") +
      (notFound ? " · " + notFound + " not found" : ""),
  );
  const backends = state.backends;
  const incompatible = count(backends, "incompatible");
  const backendsNotFound = count(backends, "not_found");
  setText(
    $("count-backends"),
    count(backends, "online") + " online · " + count(backends, "busy") + " busy · " + count(backends, "offline") +
      " offline" + (incompatible ? " · " + incompatible + " incompatible" : "") +
      (backendsNotFound ? " · " + backendsNotFound + " not found" : ""),
  );
  const shown = state.apps.size;
  const active = count(state.apps, "active");
  const total = Math.max(state.appsTotal, shown);
  setText($("count-apps"), active + " active · " + (shown - active) + " stale" +
    (total > shown ? " (" + total + " registered)" : ""));
}

/** Read the fleet's health again (after a node or backend event). */
export const refreshHealth = refresher("/api/network/health", (health) => {
  state.health = health;
  renderHealth();
}, 1000);
