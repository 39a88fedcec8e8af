/* The llama.cpp RPC backends table: status, protocol, each device's free memory.
 * Whether a backend answers (online or busy) is the server's `usable`. */

import { refresher } from "../api.js";
import { $, badge, bar, el, fmtBytes, num, onBeat, Pager, setText, showRows } from "../dom.js";
import { pageRows, state, takeVerdicts } from "../state.js";

let changed = () => {};
let pager = null;

/** `onChange` is called when the backend list was read again (the header counts). */
export function init({ onChange }) {
  changed = onChange;
  pager = new Pager($("backends-pager"), pageRows("backends"), () => renderBackends());
}

function byAddress(a, b) {
  const x = String(a.address);
  const y = String(b.address);
  return x < y ? -1 : x > y ? 1 : a.id - b.id;
}

function devicesCell(backend) {
  const cell = el("td");
  const list = Array.isArray(backend.devices) ? backend.devices : [];
  if (!list.length) cell.append(el("span", { className: "muted", text: backend.usable ? "not reported yet" : "—" }));
  for (const device of list) {
    const free = num(device.free);
    const total = num(device.total);
    const used = free !== null && total ? (total - free) / total : 0;
    const label = "device " + device.index + ": " + fmtBytes(free) + " free of " + fmtBytes(total);
    cell.append(el("div", { className: "device" }, bar(used, label), el("span", { className: "bar-label", text: label })));
  }
  return cell;
}

export function renderBackends() {
  const backends = [...state.backends.values()].sort(byAddress);
  const rows = pager.slice(backends).map((backend) =>
    el("tr", { id: "backend-" + backend.id, dataset: { key: String(backend.id) } },
      el("td", { className: "url addr", text: backend.address }),
      el("td", null, badge(backend.status)),
      el("td", { text: backend.protocol || "—" }),
      devicesCell(backend)));
  showRows($("backends-body"), rows, "No RPC backends known.", 4);
  setText($("backends-summary"), backends.length + " known");
}

const scheduleBackends = () => onBeat(renderBackends);

/** Read the backend list again: devices and protocol come with it, not with events. */
const refreshBackends = refresher("/api/network/backends", (data) => {
  state.backends = new Map((data.backends || []).map((b) => [b.id, b]));
  scheduleBackends();
  changed();
}, 2000, "backends");

export function onBackendEvent(message) {
  const id = message.backend_id;
  if (message.type.endsWith("_removed")) state.backends.delete(id);
  else if (id !== undefined) {
    const backend = state.backends.get(id) || { id, address: message.backend, devices: [] };
    backend.status = message.new_status || message.status || backend.status;
    takeVerdicts(backend, message, ["usable"]);
    state.backends.set(id, backend);
  }
  scheduleBackends();
  refreshBackends();
}
