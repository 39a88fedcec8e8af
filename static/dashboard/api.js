/* Reading the server's HTTP API: only when a stream says something changed, never
 * on a timer. */

import { throttle } from "./dom.js";

export async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    const error = new Error(path + " answered " + response.status);
    error.status = response.status;
    throw error;
  }
  return response.json();
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
 * the answer and the path it was for to `show`. `path` may be a function, read at
 * each call. A failed read keeps what is shown: the next event asks again. */
export function refresher(path, show, ms) {
  return throttle(async () => {
    const wanted = typeof path === "function" ? path() : path;
    let data;
    try {
      data = await getJson(wanted);
    } catch (_) {
      return;
    }
    show(data, wanted);
  }, ms);
}
