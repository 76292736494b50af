// Sync runs (admins): a period run (a month) or a quick incremental one (each module from its
// last run; the first time, the last 30 days), live per-module progress and logs, and a
// summary once a run ends. Live and polled data meet in mergeRun: statuses only move forward
// and module counts only grow.

import { api, enc, worthShowing } from "./api.js";
import { workflowUrl } from "./jobs.js";
import { $, debounce, element, fillSelect, newestFirst, orderList, parseTime, plural, setChip, setResult, shortId, toast } from "./util.js";
import { on, state } from "./state.js";
import { onRefresh } from "./stream.js";

const MAX_RUNS = 10;
const MAX_LOG_LINES = 300;
const RUN_RANK = { QUEUED: 0, RUNNING: 1, DONE: 2, FAILED: 2, CANCELED: 2, SKIPPED: 2 };
const MODULE_RANK = { pending: 0, running: 1, done: 2, failed: 2, canceled: 2 };
const MODULE_ICON = { pending: "○", running: "", done: "✓", failed: "✕", canceled: "–" };

const runs = new Map(); // id -> run, plus `logs` (Map id -> line) and `logMax`
const runEls = new Map();
const isAdmin = () => Boolean(state.me && state.me.is_admin);

async function refreshRuns() {
  if (!isAdmin()) return;
  const page = await api(`/v1/sync-runs?limit=${MAX_RUNS}`);
  for (const run of page.items) mergeRun(run);
  // The list shows stored progress; a run's own page has its live module rows and logs.
  const wanted = page.items.filter((r) => RUN_RANK[r.status] < 2 || !runs.get(r.id).detailed);
  await Promise.all(wanted.map((r) => refreshRun(r.id)));
}

async function refreshRun(id) {
  const run = await api(`/v1/sync-runs/${enc(id)}`);
  const merged = mergeRun(run);
  merged.detailed = true;
  const recent = run.recent_logs || [];
  // More lines than the recent ones since we last looked: read the gap from the log.
  if (merged.logMax && recent.length && recent[0].id > merged.logMax + 1) {
    const gap = await api(`/v1/sync-runs/${enc(id)}/logs?after=${merged.logMax}&limit=500`);
    addLogs(merged, gap.items);
  }
  addLogs(merged, recent);
  renderRun(merged);
}

function mergeRun(incoming) {
  let run = runs.get(incoming.id);
  const stale = run && (RUN_RANK[incoming.status] ?? 0) < (RUN_RANK[run.status] ?? 0);
  if (!run) {
    run = { id: incoming.id, modules: {}, logs: new Map(), logMax: 0, detailed: false };
    runs.set(run.id, run);
  }
  if (!stale) {
    for (const [k, v] of Object.entries(incoming)) {
      if (v !== undefined && k !== "modules" && k !== "recent_logs" && k !== "id") run[k] = v;
    }
  }
  for (const [name, progress] of Object.entries(incoming.modules || {})) mergeModule(run, name, progress);
  renderRun(run);
  return run;
}

function mergeModule(run, name, progress) {
  const old = run.modules[name];
  if (old) {
    const rank = MODULE_RANK[progress.status] ?? 0;
    const oldRank = MODULE_RANK[old.status] ?? 0;
    if (rank < oldRank || (rank === oldRank && (progress.pages ?? 0) < (old.pages ?? 0))) return;
  }
  run.modules[name] = { ...old, ...progress };
}

function addLogs(run, lines) {
  for (const line of lines) {
    run.logs.set(line.id, line);
    run.logMax = Math.max(run.logMax, line.id);
  }
  while (run.logs.size > MAX_LOG_LINES) run.logs.delete(run.logs.keys().next().value);
}

function summary(run) {
  const modules = Object.values(run.modules);
  const total = (k) => modules.reduce((n, m) => n + (m[k] || 0), 0);
  const started = parseTime(run.started_at || run.created_at);
  const finished = parseTime(run.finished_at);
  const took = started && finished ? ` in ${Math.max(0, Math.round((finished - started) / 1000))} s` : "";
  const done = modules.filter((m) => m.status === "done").length;
  if (run.status === "SKIPPED") return `Skipped: ${run.error_message || "another run of the company was in progress"}.`;
  return `${run.status === "DONE" ? "Finished" : run.status === "FAILED" ? "Failed" : "Stopped"}${took}: ` +
    `${done}/${modules.length} modules done · ${total("processed")} processed · ${total("skipped")} skipped · ` +
    `${plural(total("errors"), "error")}.`;
}

function renderRun(run) {
  let el = runEls.get(run.id);
  if (!el) {
    el = $("#run-template").content.firstElementChild.cloneNode(true);
    el.dataset.runId = run.id;
    $(".run-cancel", el).addEventListener("click", () => cancelRun(run.id, el));
    runEls.set(run.id, el);
    $("#runs").append(el);
  }
  const terminal = RUN_RANK[run.status] === 2;
  el.dataset.status = run.status;
  setChip($(".status", el), run.status);
  const window_ = run.mode === "period" && run.start_date ? ` ${run.start_date} … ${run.end_date}` : "";
  const by = run.triggered_by === "schedule" ? " · scheduled" : "";
  $(".run-title", el).textContent = `${run.company_id} · ${run.mode}${window_}${by}`;
  $(".run-id", el).textContent = shortId(run.id);
  $(".run-id", el).title = run.id;
  const link = $(".temporal-link", el);
  const url = workflowUrl(run, "sync-run-");
  link.hidden = !url;
  if (url) {
    link.href = url;
    link.setAttribute("aria-label", `sync run ${shortId(run.id)} in the Temporal web UI`);
  }
  const cancel = $(".run-cancel", el);
  cancel.hidden = terminal;
  cancel.setAttribute("aria-label", `Cancel sync run ${shortId(run.id)}`);
  const error = $(".run-error", el);
  error.textContent = run.status === "SKIPPED" ? "" : run.error_message || "";
  error.hidden = !error.textContent;
  error.classList.toggle("quiet", run.status === "CANCELED");
  const done = $(".run-summary", el);
  done.hidden = !terminal;
  if (terminal) done.textContent = summary(run);
  // A skipped run never started: its modules have nothing to show.
  $(".modules", el).hidden = run.status === "SKIPPED";
  $(".run-logs-box", el).hidden = run.status === "SKIPPED";
  if (run.status !== "SKIPPED") renderModules(run, el);
  renderLogs(run, el);
  const list = $("#runs");
  orderList(list, (a, b) => newestFirst(runs.get(a.dataset.runId), runs.get(b.dataset.runId)));
  while (list.children.length > MAX_RUNS) {
    const last = list.lastElementChild;
    runEls.delete(last.dataset.runId);
    runs.delete(last.dataset.runId);
    last.remove();
  }
  $("#runs-empty").hidden = list.children.length > 0;
}

function renderModules(run, el) {
  const list = $(".modules", el);
  for (const [name, progress] of Object.entries(run.modules)) {
    let item = list.querySelector(`[data-module="${CSS.escape(name)}"]`);
    if (!item) {
      item = element("li", { class: "module", "data-module": name },
        element("span", { class: "module-icon", "aria-hidden": "true" }),
        element("span", { class: "module-name", text: name }),
        element("span", { class: "visually-hidden module-status" }),
        element("span", { class: "module-counts" }),
        element("span", { class: "module-error" }));
      list.append(item);
    }
    const status = progress.status || "pending";
    item.dataset.status = status;
    item.classList.toggle("current", run.current_module === name && status === "running");
    const icon = $(".module-icon", item);
    icon.textContent = MODULE_ICON[status] ?? "?";
    icon.classList.toggle("spinner", status === "running");
    $(".module-status", item).textContent = `: ${status}`;
    const n = (k) => progress[k] ?? 0;
    $(".module-counts", item).textContent =
      `${n("processed")} processed · ${n("skipped")} skipped · ${plural(n("errors"), "error")} · ${plural(n("pages"), "page")}`;
    $(".module-error", item).textContent = progress.error || "";
  }
}

function renderLogs(run, el) {
  const list = $(".run-logs", el);
  const shown = Number(list.dataset.max || 0);
  const fresh = [...run.logs.values()].filter((l) => l.id > shown).sort((a, b) => a.id - b.id);
  if (!fresh.length) return;
  const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  for (const line of fresh) {
    const at = parseTime(line.at);
    list.append(element("li", {
      class: `log log-${line.level}`,
      text: `${at ? new Date(at).toLocaleTimeString() : ""} ${line.level}${line.module ? ` ${line.module}` : ""}: ${line.message}`,
    }));
  }
  list.dataset.max = String(fresh[fresh.length - 1].id);
  while (list.children.length > MAX_LOG_LINES) list.firstElementChild.remove();
  if (stick) list.scrollTop = list.scrollHeight;
}

async function cancelRun(id, el) {
  const button = $(".run-cancel", el);
  button.disabled = true;
  button.textContent = "Canceling…";
  try {
    mergeRun(await api(`/v1/sync-runs/${enc(id)}/cancel`, { method: "POST" }));
    debounce(`run:${id}`, () => refreshRun(id));
  } catch (error) {
    button.disabled = false;
    button.textContent = "Cancel";
    if (worthShowing(error)) toast(`Could not cancel run ${shortId(id)}: ${error.message}`);
  }
}

async function startRun(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const mode = (event.submitter && event.submitter.value) || "period";
  const result = $(".form-result", form);
  if (mode === "period" && !form.month.value) {
    setResult(result, "Choose a month for a period sync.", { error: true });
    return;
  }
  const buttons = form.querySelectorAll("button");
  for (const b of buttons) b.disabled = true;
  setResult(result, "Starting…");
  const body = { company_id: form.company.value, mode };
  if (mode === "period") body.month = form.month.value;
  try {
    const run = mergeRun(await api("/v1/sync-runs", { method: "POST", body }));
    debounce(`run:${run.id}`, () => refreshRun(run.id));
    setResult(result, `Started ${mode} run ${shortId(run.id)}.`, { runId: run.id });
  } catch (error) {
    if (error.status !== -1) setResult(result, `Could not start: ${error.message}`, { error: true });
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

export function wireSync() {
  $("#sync-form").addEventListener("submit", startRun);
  on("connected", (me) => {
    if (me.is_admin) fillSelect($("#sync-company"), me.companies);
  });
  on("disconnected", () => {
    runs.clear();
    runEls.clear();
    $("#runs").replaceChildren();
    setResult($("#sync-form .form-result"), "");
  });
  on("stream-event", ({ type, payload }) => {
    if (!type.startsWith("sync_run.") || !isAdmin()) return;
    const runId = payload.run_id || payload.id;
    if (!runId) return;
    if (type === "sync_run.module") {
      const run = runs.get(runId);
      if (run && payload.module && payload.progress) {
        if (payload.current_module !== undefined && RUN_RANK[run.status] < 2) run.current_module = payload.current_module;
        mergeModule(run, payload.module, payload.progress);
        renderRun(run);
        return;
      }
    } else if (type !== "sync_run.log" && runs.has(runId)) mergeRun({ ...payload, id: runId });
    debounce(`run:${runId}`, () => refreshRun(runId));
  });
  onRefresh(refreshRuns);
}
