// Pull-sync clients (admins): each registered client with its state, last pull, pending
// records and consecutive failures, live from the `pull-sync:*` topic; "Sync all now" pulls
// every active client and says how it went; the scheduler's state and interval.

import { api, worthShowing } from "./api.js";
import { $, ago, element, parseTime, setResult, shortId, toast } from "./util.js";
import { on, state } from "./state.js";
import { onRefresh } from "./stream.js";

const clients = new Map();
const REFRESH_MS = 10_000;
let lastRead = 0;

async function refreshClients(force = false) {
  if (!state.me || !state.me.is_admin) return;
  if (!force && Date.now() - lastRead < REFRESH_MS) return;
  lastRead = Date.now();
  const [list, scheduler] = await Promise.all([
    api("/v1/pull-sync/clients"),
    api("/v1/pull-sync/scheduler/status").catch(() => null),
  ]);
  clients.clear();
  for (const client of list.clients) clients.set(client.id, client);
  render();
  const line = $("#pull-scheduler");
  if (!scheduler) line.textContent = "scheduler: unknown";
  else if (!scheduler.exists) line.textContent = "scheduler: not set up";
  else line.textContent = `scheduler: ${scheduler.running ? "running" : "stopped"}${scheduler.interval_seconds ? `, every ${scheduler.interval_seconds} s` : ""}`;
}

function render() {
  const rows = [...clients.values()]
    .sort((a, b) => Number(b.active) - Number(a.active) || String(a.url).localeCompare(String(b.url)))
    .map((c) => {
      const stateChip = element("span", { class: `chip ${c.active ? "s-active" : "s-inactive"}`, text: c.active ? "active" : "inactive" });
      const last = parseTime(c.last_pull_at);
      return element("tr", { "data-client-id": c.id, "data-active": String(c.active) },
        element("td", {}, element("span", { class: "client-url", text: c.url, title: c.id }),
          element("span", { class: "hint", text: ` ${c.user_id} · ${shortId(c.id)}` })),
        element("td", {}, stateChip),
        element("td", { class: "last-pull", text: last ? ago(last) : "never", title: last ? new Date(last).toLocaleString() : "" }),
        element("td", { class: "pending num", text: String(c.pending_count ?? 0) }),
        element("td", { class: "failures num", text: String(c.consecutive_failures ?? 0) }),
        element("td", { class: "client-error", text: c.last_error || "", title: c.last_error || "" }));
    });
  $("#pull-clients tbody").replaceChildren(...rows);
  $("#pull-empty").hidden = rows.length > 0;
  $("#pull-clients").hidden = rows.length === 0;
}

async function syncAll() {
  const button = $("#pull-sync-all");
  const result = $("#pull-result");
  button.disabled = true;
  setResult(result, "Pulling every active client…");
  try {
    const done = await api("/v1/pull-sync/sync-all", { method: "POST" });
    setResult(result,
      `Pulled ${done.clients} clients: ${done.ok} ok, ${done.failed} failed, ${done.skipped} skipped; ${done.stored} records stored.`,
      { workflowId: done.workflow_id });
    await refreshClients(true);
  } catch (error) {
    if (error.status !== -1) setResult(result, `Could not pull: ${error.message}`, { error: true });
  } finally {
    button.disabled = false;
  }
}

export function wirePullSync() {
  $("#pull-sync-all").addEventListener("click", syncAll);
  on("connected", (me) => {
    if (!me.is_admin) return;
    refreshClients(true).catch((error) => {
      if (worthShowing(error)) toast(`Could not list pull-sync clients: ${error.message}`);
    });
  });
  on("disconnected", () => {
    clients.clear();
    lastRead = 0;
    $("#pull-clients tbody").replaceChildren();
    setResult($("#pull-result"), "");
  });
  on("stream-event", ({ type, payload }) => {
    if (!type.startsWith("pull_client.") || !payload.id) return;
    if (type === "pull_client.removed" || type === "pull_client.unregistered") clients.delete(payload.id);
    else clients.set(payload.id, { ...clients.get(payload.id), ...payload });
    render();
  });
  onRefresh(() => refreshClients(false));
  setInterval(() => {
    if (clients.size) render();
  }, 15_000);
}


