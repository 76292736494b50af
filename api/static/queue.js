// The queue (active jobs first, and the last half hour's failures, which can be retried) and the
// history below it: filters on kind, status, provider, project and dates, paged by cursor.

import { api, enc, worthShowing } from "./api.js";
import { ACTIVE, isTerminal, jobCard, mergeJob, renderJobCard, tickAges } from "./jobs.js";
import { $, debounce, fillSelect, newestFirst, orderList, setResult } from "./util.js";
import { on, state } from "./state.js";
import { onRefresh } from "./stream.js";

const PAGE = 15; // unless #history says otherwise (data-page-size)
const RECENT_FAILURES_MS = 30 * 60 * 1000;

const queueEls = new Map();
const historyEls = new Map();
const history = { cursors: [null], page: 0, next: null, ticket: 0, drawing: false };

// --- queue -----------------------------------------------------------------------------------

function showInQueue(job) {
  if (!ACTIVE.includes(job.status) && !(job.status === "failed" && job.inQueue)) return false;
  return true;
}

function placeInQueue(job) {
  let el = queueEls.get(job.id);
  if (!showInQueue(job)) {
    if (el) {
      el.remove();
      queueEls.delete(job.id);
    }
  } else {
    if (!el) {
      el = jobCard(job);
      queueEls.set(job.id, el);
      $("#queue").append(el);
    } else renderJobCard(job, el);
    orderList($("#queue"), (a, b) => {
      const ja = state.jobs.get(a.dataset.jobId);
      const jb = state.jobs.get(b.dataset.jobId);
      return Number(isTerminal(ja)) - Number(isTerminal(jb)) || newestFirst(ja, jb);
    });
  }
  $("#queue-empty").hidden = queueEls.size > 0;
}

async function refreshQueue() {
  const since = new Date(Date.now() - RECENT_FAILURES_MS).toISOString();
  const pages = await Promise.all([
    ...ACTIVE.map((s) => api(`/v1/jobs?status=${s}&limit=50`)),
    api(`/v1/jobs?status=failed&limit=5&created_from=${enc(since)}`),
  ]);
  const seen = new Set();
  pages.forEach((page, i) => {
    for (const job of page.items) {
      seen.add(job.id);
      if (i === ACTIVE.length) job.inQueue = true; // a recent failure, offered for retry
      mergeJob(job);
    }
  });
  // Anything the queue shows that no answer listed any more has moved on: read it.
  for (const id of queueEls.keys()) {
    const job = state.jobs.get(id);
    if (!seen.has(id) && job && !isTerminal(job)) debounce(`job:${id}`, () => api(`/v1/jobs/${enc(id)}`).then(mergeJob));
  }
}

// --- history ---------------------------------------------------------------------------------

function filterQuery() {
  const form = $("#history-filters");
  const params = new URLSearchParams();
  for (const name of ["kind", "status", "provider"]) if (form[name].value) params.set(name, form[name].value);
  if (form.project.value.trim()) params.set("project_id", form.project.value.trim());
  // Dates are the operator's local days.
  if (form.from.value) params.set("created_from", new Date(`${form.from.value}T00:00:00`).toISOString());
  if (form.to.value) {
    const end = new Date(`${form.to.value}T00:00:00`);
    end.setDate(end.getDate() + 1);
    params.set("created_to", end.toISOString());
  }
  return params;
}

async function loadHistory() {
  const params = filterQuery();
  params.set("limit", String(Number($("#history").dataset.pageSize) || PAGE));
  const cursor = history.cursors[history.page];
  if (cursor) params.set("cursor", cursor);
  const ticket = ++history.ticket;
  const page = await api(`/v1/jobs?${params}`);
  if (ticket !== history.ticket) return; // filters or page changed meanwhile: a newer load draws
  history.next = page.next_cursor;
  const list = $("#history");
  history.drawing = true; // its own merges are no news to it
  const items = page.items.map((job) => mergeJob(job));
  history.drawing = false;
  for (const [id, el] of historyEls) {
    if (!items.some((j) => j.id === id)) {
      el.remove();
      historyEls.delete(id);
    }
  }
  for (const job of items) {
    let el = historyEls.get(job.id);
    if (!el) {
      el = jobCard(job);
      historyEls.set(job.id, el);
      list.append(el);
    }
  }
  // The API's order (created_at, then id, to the microsecond).
  const rank = new Map(items.map((job, i) => [job.id, i]));
  orderList(list, (a, b) => rank.get(a.dataset.jobId) - rank.get(b.dataset.jobId));
  list.dataset.query = filterQuery().toString();
  list.dataset.page = String(history.page + 1);
  $("#history-empty").hidden = items.length > 0;
  $("#history-page").textContent = `page ${history.page + 1}`;
  $("#history-older").disabled = !history.next;
  $("#history-newest").disabled = history.page === 0;
}

function showHistory(reset) {
  if (reset) {
    history.cursors = [null];
    history.page = 0;
  }
  const result = $(".history-result");
  setResult(result, "");
  loadHistory().catch((error) => {
    if (worthShowing(error)) setResult(result, `Could not list jobs: ${error.message}`, { error: true });
  });
}

export function wireQueue() {
  const form = $("#history-filters");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    showHistory(true);
  });
  form.addEventListener("reset", () => setTimeout(() => showHistory(true)));
  for (const select of form.querySelectorAll("select")) select.addEventListener("change", () => showHistory(true));
  $("#history-older").addEventListener("click", () => {
    if (!history.next) return;
    history.cursors[history.page + 1] = history.next;
    history.page += 1;
    showHistory(false);
  });
  $("#history-newest").addEventListener("click", () => showHistory(true));

  on("connected", (me) => {
    fillSelect($("#f-provider"), me.providers, { keepFirst: true });
    showHistory(true);
  });
  on("disconnected", () => {
    for (const map of [queueEls, historyEls]) map.clear();
    $("#queue").replaceChildren();
    $("#history").replaceChildren();
    $("#queue-empty").hidden = false;
  });
  on("job", (job) => {
    placeInQueue(job);
    const el = historyEls.get(job.id);
    if (el) renderJobCard(job, el);
    // A job started or finished: the first page of the history may have changed.
    if (history.page === 0 && !el && !history.drawing) debounce("history", loadHistory, 400);
  });
  on("stream-event", ({ type, payload }) => {
    if (!type.startsWith("job.") || !payload.id) return;
    const known = state.jobs.get(payload.id);
    // An event's outputs are stored records without links; events carry no input either:
    // the job read from REST brings both.
    const { outputs, ...rest } = payload;
    if (known && payload.status === "failed") rest.inQueue = true;
    mergeJob(rest);
    const newOutputs = (outputs || []).length > ((known && known.outputs) || []).length;
    if (!known || !known.input || newOutputs) {
      debounce(`job:${payload.id}`, () => api(`/v1/jobs/${enc(payload.id)}`).then(mergeJob));
    }
  });
  onRefresh(async () => {
    await refreshQueue();
    if (history.page === 0) await loadHistory();
  });
  setInterval(() => {
    tickAges($("#queue"));
    tickAges($("#history"));
  }, 5000);
}
