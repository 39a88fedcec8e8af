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
