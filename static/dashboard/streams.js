/* The WebSocket stream client and the header's connection state.
 *
 * Each stream resumes after the last event id it knows (?since=): first the
 * snapshot's watermark, then the last id received, so a reconnect replays what
 * was missed and nothing twice. It reconnects with backoff, and the header says
 * "Reconnecting… (stream names)" meanwhile.
 */

import { $, num, onBeat, setText } from "./dom.js";
import { heardServerTime } from "./state.js";

const RECONNECT_MAX_MS = 8000;
const streams = [];

/** Say in the header whether every stream is live, or which are reconnecting. */
export function renderConnection() {
  const active = streams.filter((s) => !s.given_up);
  let stateName = "live";
  let label = "Live";
  const down = active.filter((s) => s.state !== "live");
  if (active.length && down.length) {
    const reconnecting = down.filter((s) => s.state === "reconnecting");
    if (reconnecting.length) {
      stateName = "reconnecting";
      label = "Reconnecting… (" + reconnecting.map((s) => s.label).join(", ") + ")";
    } else {
      stateName = "connecting";
      label = "Connecting…";
    }
  }
  $("connection").dataset.state = stateName;
  setText($("connection-text"), label);
  document.body.dataset.connection = stateName;
}

/** One WebSocket stream that reconnects with backoff and resumes after its last id. */
export class Stream {
  constructor(label, path, since, onMessage, options = {}) {
    this.label = label;
    this.path = path;
    this.lastId = typeof since === "number" ? since : null;
    this.onMessage = onMessage;
    this.params = options.params || {};
    this.onOpen = options.onOpen || null;
    this.attempts = 0;
    this.state = "connecting";
    this.given_up = false;
    this.ws = null;
    // Messages are taken at once (their ids count for a reconnect) and handed to
    // the page at its next beat, in the order they came.
    this.inbox = [];
    this.deliver = () => {
      const messages = this.inbox;
      this.inbox = [];
      for (const message of messages) {
        try {
          this.onMessage(message);
        } catch (error) {
          console.error(error);
        }
      }
    };
    streams.push(this);
  }

  /** Take one message into the inbox, once: its id counts for a reconnect now. */
  take(message) {
    if (!message || typeof message !== "object") return;
    heardServerTime(message.timestamp);
    heardServerTime(message.at);
    if (message.metrics) heardServerTime(message.metrics.at);
    const id = num(message.id);
    if (id !== null && this.lastId !== null && id <= this.lastId) return;
    if (id !== null) this.lastId = id;
    this.inbox.push(message);
  }

  url() {
    const query = new URLSearchParams(this.params);
    if (this.lastId !== null) query.set("since", String(this.lastId));
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const qs = query.toString();
    return scheme + "//" + location.host + this.path + (qs ? "?" + qs : "");
  }

  connect() {
    if (this.given_up) return;
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (_) {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempts = 0;
      this.state = "live";
      renderConnection();
      if (this.onOpen) this.onOpen(this);
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (!message || typeof message !== "object") return;
      if (message.type === "error") {
        console.warn("stream " + this.path + " refused:", message.message);
        return;
      }
      // ?batch=1: the events of a moment in one message, each as it would come alone.
      const each = message.type === "batch" && Array.isArray(message.events) ? message.events : [message];
      for (const one of each) this.take(one);
      onBeat(this.deliver);
    };
    ws.onclose = (event) => {
      this.ws = null;
      if (this.given_up) return;
      if (event.code === 4400) {
        this.given_up = true;
        this.state = "offline";
        renderConnection();
        return;
      }
      this.retry();
    };
  }

  /** Stop for good: no reconnecting, and no longer part of the connection state. */
  close() {
    this.given_up = true;
    this.state = "offline";
    if (this.ws) this.ws.close();
    renderConnection();
  }

  retry() {
    this.attempts += 1;
    this.state = "reconnecting";
    renderConnection();
    const base = Math.min(RECONNECT_MAX_MS, 250 * 2 ** Math.min(this.attempts - 1, 6));
    setTimeout(() => this.connect(), base * (0.75 + Math.random() * 0.5));
  }
}

/** Yield a samples message's rows as objects, by the field names it sends with
 * them (`fields`), not by position. Samples are measurements, not events: they
 * have no id and are not replayed. */
export function* sampleRows(message, key) {
  const fields = Array.isArray(message.fields) ? message.fields : [];
  for (const values of Array.isArray(message[key]) ? message[key] : []) {
    if (!Array.isArray(values)) continue;
    const row = Object.create(null); // field names come from the network
    fields.forEach((field, i) => {
      row[field] = values[i];
    });
    yield row;
  }
}
