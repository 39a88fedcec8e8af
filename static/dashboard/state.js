/* The page's shared state: what the server rendered into the page (the snapshot),
 * kept current by the streams. Panels keep what only they use to themselves.
 *
 * Verdicts are the server's: a node's `usable` (it answered its last probe) and
 * `loaded_models_known`, a backend's `usable`, an application's `status`, the
 * fleet's health. The page shows them; it does not work them out from statuses.
 */

const snapshotNode = document.getElementById("dashboard-snapshot");

/** The snapshot as the server wrote it (see sollol_site/views.py `_snapshot`). */
export const snap = snapshotNode ? JSON.parse(snapshotNode.textContent) : {};

// Server clock minus browser clock: "last seen" and uptimes tick in the server's
// time, whatever the browser's clock says. Every server time the page hears (the
// snapshot's, each event's `timestamp`, each sample's `at`) had passed on the
// server before it arrived, so each is a lower bound: the largest is the closest.
let clockSkew = (snap.generated_at || Date.now() / 1000) - Date.now() / 1000;

export const serverNow = () => Date.now() / 1000 + clockSkew;

/** Take a server time the page just heard (epoch seconds) into serverNow. */
export function heardServerTime(at) {
  if (typeof at !== "number" || !Number.isFinite(at)) return;
  clockSkew = Math.max(clockSkew, at - Date.now() / 1000);
}

export const state = {
  health: snap.health || null,
  nodes: new Map((snap.nodes || []).map((node) => [node.id, node])),
  backends: new Map((snap.backends || []).map((backend) => [backend.id, backend])),
  apps: new Map((snap.applications || []).map((app) => [app.app_id, app])),
  // Registered in all, beyond the apps the snapshot carried.
  appsTotal: snap.applications_total || 0,
};

/** How many rows a long table shows at a time (the server's PAGE_ROWS). */
export function pageRows(table) {
  const rows = snap.page_rows && snap.page_rows[table];
  return typeof rows === "number" && rows > 0 ? rows : 100;
}

/** Copy the verdicts an event carries onto the node or backend it is about. */
export function takeVerdicts(target, message, fields) {
  for (const field of fields) if (field in message) target[field] = message[field];
}
