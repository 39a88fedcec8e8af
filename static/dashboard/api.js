/* Reading the server's HTTP API: only when a stream says something changed, never
 * on a timer. */

import { onBeat, throttle } from "./dom.js";

export async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    const error = new Error(path + " answered " + response.status);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

/** Read every page of a paged list (`?limit=&offset=`, answered with `total`):
 * one answer whose `key` holds all the items. Items that move between pages while
 * they are read are seen once or twice, never lost for good: the next read fixes it. */
export async function getAllPages(path, key, pageSize = 1000) {
  const join = path.includes("?") ? "&" : "?";
  let offset = 0;
  let items = [];
  for (;;) {
    const page = await getJson(path + join + "limit=" + pageSize + "&offset=" + offset);
    const got = page[key] || [];
    items = items.concat(got);
    offset += got.length;
    if (got.length === 0 || offset >= page.total) return { ...page, [key]: items, offset: 0 };
  }
}

const csrfMeta = document.querySelector('meta[name="csrf-token"]');

/** Send a JSON body (or none) with `method`; resolve to the answer's JSON (null
 * for 204), or reject with the server's own error message. The page's session
 * carries Django's CSRF token in a header, as a write from a staff user needs. */
export async function sendJson(method, path, body) {
  const headers = { Accept: "application/json" };
  if (csrfMeta && csrfMeta.content) headers["X-CSRFToken"] = csrfMeta.content;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const said = answer && answer.error;
    const message = typeof said === "string" ? said : said ? JSON.stringify(said) : "";
    throw new Error(message || path + " answered " + response.status);
  }
  return answer;
}

/** Return a function that reads `path` again, at most once per `ms`, and hands
 * the answer and the path it was for to `show` at the page's next beat. `path` may be a function, read at
 * each call; with `pagesOf`, every page of that paged list is read. A failed read
 * keeps what is shown: the next event asks again. */
export function refresher(path, show, ms, pagesOf = null) {
  return throttle(async () => {
    const wanted = typeof path === "function" ? path() : path;
    let data;
    try {
      data = pagesOf ? await getAllPages(wanted, pagesOf) : await getJson(wanted);
    } catch (_) {
      return;
    }
    onBeat(() => show(data, wanted));
  }, ms);
}
