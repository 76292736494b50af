// autosync dashboard: REST for reads and actions, Server-Sent Events (/v1/events) for live
// updates, REST polling every POLL_MS while the stream is down. No build step, no dependencies.
//
// The API key only ever travels in the Authorization header: images and videos load from the
// signed links the API puts in each job's outputs, and the stream opens with a short-lived
// token from POST /v1/stream-tokens.
//
// Live and polled data meet in one place (mergeJob / mergeRun): statuses only move forward and
// module counts only grow, so a late poll answer never undoes a newer event.

const POLL_MS = 2500;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 10000;
const DEBOUNCE_MS = 150;
const MAX_JOBS = 40; // newest jobs read per poll
const MAX_RUNS = 10;
const MAX_LOG_LINES = 300;
const KEY_STORAGE = "autosync.apiKey";
const STREAM_TOKEN_MARGIN_MS = 60_000; // a stream token this close to expiry is replaced

const JOB_RANK = { queued: 0, submitted: 1, processing: 2, storing: 3, succeeded: 4, failed: 4, canceled: 4 };
const RUN_RANK = { QUEUED: 0, RUNNING: 1, DONE: 2, FAILED: 2, CANCELED: 2 };
const MODULE_RANK = { pending: 0, running: 1, done: 2, failed: 2, canceled: 2 };
const MODULE_ICON = { pending: "○", running: "", done: "✓", failed: "✕", canceled: "–" };
// EventSource only hands named events to listeners registered for their name.
const EVENT_TYPES = [
  ...Object.keys(JOB_RANK).map((s) => `job.${s}`),
  ...Object.keys(RUN_RANK).map((s) => `sync_run.${s.toLowerCase()}`),
  "sync_run.module", "sync_run.log", "project.node_updated",
];
const OUTPUT_PATH = /\/v1\/jobs\/([^/?#]+)\/outputs\/(\d+)/;

const $ = (selector, root = document) => root.querySelector(selector);

const state = {
  key: "",
  me: null,
  jobs: new Map(), // id -> job, as merged from REST and events
  runs: new Map(), // id -> run, plus `logs` (Map id -> line) and `logMax`
  jobEls: new Map(),
  runEls: new Map(),
  lastEventId: 0,
  conn: "idle", // idle | connecting | live | polling
  source: null,
  streamToken: null, // { token, expiresAt } for opening the stream
  opening: null, // the session whose openStream is waiting for a token
  backoff: BACKOFF_MIN_MS,
  reconnectTimer: null,
  reconnectAt: 0,
  pollTimer: null,
  tickTimer: null,
  pollError: null,
  session: 0, // bumped on every connect/disconnect: answers for an older key are dropped
  compareJobId: null,
  timers: new Map(), // debounced fetches by key
};

// --- REST ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function describeError(body, response) {
  // Every API error is {"error": {"code", "message", "details"}}.
  const error = body && body.error;
  if (!error || typeof error !== "object") return `${response.status} ${response.statusText}`;
  const details = error.details || {};
  if (Array.isArray(details.fields) && details.fields.length) {
    return details.fields
      .map((d) => {
        const where = (d.loc || []).filter((p) => p !== "body").join(".");
        const msg = String(d.msg || "").replace(/^Value error, /, "");
        return where ? `${where}: ${msg}` : msg;
      })
      .join("; ");
  }
  const message = error.message || error.code || `${response.status} ${response.statusText}`;
  return details.running_run_id ? `${message} (running run: ${details.running_run_id})` : message;
}

async function api(path, { method = "GET", body } = {}) {
  const session = state.session;
  const headers = { Authorization: `Bearer ${state.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "the API is unreachable");
  }
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : null;
  if (session !== state.session) throw new ApiError(-1, "superseded");
  if (!response.ok) {
    const error = new ApiError(response.status, describeError(data, response));
    if (response.status === 401 && state.me) keyRejected(error.message);
    throw error;
  }
  return data;
}

// --- connection: key, stream, polling ---------------------------------------------------------

function showNotice(text) {
  const notice = $("#key-help");
  notice.textContent = text;
  notice.hidden = !text;
}

function toast(text) {
  const box = $("#toasts");
  const item = document.createElement("p");
  item.textContent = text;
  box.append(item);
  setTimeout(() => item.remove(), 8000);
}

async function connect(key) {
  disconnect();
  state.key = key.trim();
  if (!state.key) {
    showNotice("Enter an API key to start (the `make up` stack configures `dev-key`).");
    return;
  }
  const session = state.session;
  setConn("connecting");
  let me;
  try {
    me = await api("/v1/me");
  } catch (error) {
    if (session !== state.session) return;
    setConn("idle");
    showNotice(
      error.status === 401 || error.status === 403
        ? `That API key was not accepted: ${error.message}. Check it and connect again.`
        : `Could not reach the API (${error.message}). Is the stack running?`,
    );
    return;
  }
  localStorage.setItem(KEY_STORAGE, state.key);
  state.me = me;
  showNotice("");
  $("#whoami").textContent = `${me.user_id}${me.is_admin ? " · admin" : ""}`;
  $("#main").hidden = false;
  $("#sync-panel").hidden = !me.is_admin;
  fillSelect(document.querySelectorAll(".providers"), me.providers);
  fillSelect([$("#sync-company")], me.companies);
  openStream();
  refreshAll();
}

function disconnect() {
  state.session += 1;
  if (state.source) state.source.close();
  state.source = null;
  state.streamToken = null;
  state.opening = null;
  clearTimeout(state.reconnectTimer);
  stopPolling();
  for (const timer of state.timers.values()) clearTimeout(timer);
  state.timers.clear();
  state.me = null;
  state.lastEventId = 0;
  state.backoff = BACKOFF_MIN_MS;
  state.jobs.clear();
  state.runs.clear();
  state.jobEls.clear();
  state.runEls.clear();
  state.compareJobId = null;
  for (const id of ["#queue", "#gallery", "#runs", "#upscale-output"]) $(id).replaceChildren();
  $("#compare").hidden = true;
  $("#main").hidden = true;
  $("#whoami").textContent = "";
  for (const result of document.querySelectorAll(".form-result")) result.textContent = "";
  setConn("idle");
}

function keyRejected(message) {
  disconnect();
  showNotice(`The API key was rejected (${message}). Enter a valid key and connect again.`);
}

function setConn(conn) {
  state.conn = conn;
  const box = $("#conn");
  box.dataset.state = conn;
  renderConn();
  clearInterval(state.tickTimer);
  state.tickTimer = conn === "polling" ? setInterval(renderConn, 1000) : null;
}

// The state goes to screen readers when it changes; the ticking countdown is for eyes only.
function renderConn() {
  const box = $("#conn");
  const text = $(".conn-text", box);
  const retry = $(".conn-retry", box);
  let label = "not connected";
  let countdown = "";
  if (state.conn === "live") label = "live";
  else if (state.conn === "connecting") label = "connecting…";
  else if (state.conn === "polling") {
    const failed = state.pollError ? `; last poll failed: ${state.pollError}` : "";
    label = `polling every ${POLL_MS / 1000} s (live stream down${failed})`;
    const secs = Math.max(0, Math.ceil((state.reconnectAt - Date.now()) / 1000));
    countdown = state.source ? " · reconnecting…" : ` · reconnecting in ${secs} s`;
  }
  if (text.textContent !== label) text.textContent = label;
  retry.textContent = countdown;
}

// EventSource can't send the key in a header, and a key must never sit in a URL: the stream
// opens with a short-lived token, reused while it has a minute left.
async function streamToken() {
  const cached = state.streamToken;
  if (cached && cached.expiresAt - Date.now() > STREAM_TOKEN_MARGIN_MS) return cached.token;
  const answer = await api("/v1/stream-tokens", { method: "POST" });
  state.streamToken = { token: answer.token, expiresAt: parseTime(answer.expires_at) };
  return answer.token;
}

async function openStream() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  const session = state.session;
  if (!state.me || state.source || state.opening === session) return;
  state.opening = session;
  if (state.conn !== "polling") setConn("connecting");
  let token;
  try {
    token = await streamToken();
  } catch (error) {
    // -1: another key took over; 401: the key was rejected (api() has said so).
    if (session === state.session && error.status !== -1 && error.status !== 401) streamDown();
    return;
  } finally {
    if (state.opening === session) state.opening = null;
  }
  if (session !== state.session || !state.me || state.source) return;
  const params = new URLSearchParams();
  for (const topic of state.me.topics) params.append("topic", topic);
  params.set("token", token);
  // A new EventSource sends no Last-Event-ID, so resume explicitly.
  if (state.lastEventId) params.set("after", String(state.lastEventId));
  const source = new EventSource(`/v1/events?${params}`);
  state.source = source;
  if (state.conn === "polling") renderConn();
  source.onopen = () => {
    if (source !== state.source) return;
    state.backoff = BACKOFF_MIN_MS;
    stopPolling();
    setConn("live");
    refreshAll(); // anything that happened before the stream was open
  };
  // Any error (refused, dropped, server closed): take over with polling and our own backoff.
  source.onerror = () => {
    if (source === state.source) streamDown();
  };
  const onEvent = (message) => {
    if (source === state.source) handleEvent(message);
  };
  source.onmessage = onEvent;
  for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
}

function streamDown() {
  if (state.source) state.source.close();
  state.source = null;
  if (!state.me) return;
  clearTimeout(state.reconnectTimer);
  const delay = Math.round(state.backoff * (0.8 + Math.random() * 0.4));
  state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX_MS);
  state.reconnectAt = Date.now() + delay;
  state.reconnectTimer = setTimeout(openStream, delay);
  if (state.conn !== "polling") setConn("polling");
  startPolling();
}

function reconnectSoon() {
  if (state.me && !state.source && state.conn === "polling") {
    state.backoff = BACKOFF_MIN_MS;
    openStream();
  }
}

function startPolling() {
  if (state.pollTimer) return;
  state.pollTimer = setInterval(refreshAll, POLL_MS);
  refreshAll();
}

function stopPolling() {
  clearInterval(state.pollTimer);
  state.pollTimer = null;
  state.pollError = null;
}

let refreshing = null;
let refreshAgain = false;

function refreshAll() {
  if (!state.me) return Promise.resolve();
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      do {
        refreshAgain = false;
        await Promise.all([refreshJobs(), state.me && state.me.is_admin ? refreshRuns() : null]);
        state.pollError = null;
      } while (refreshAgain && state.me);
    } catch (error) {
      if (error.status !== -1 && error.status !== 401) state.pollError = error.message;
    } finally {
      refreshing = null;
      if (state.conn === "polling") renderConn();
    }
  })();
  return refreshing;
}

function debounce(key, fn) {
  clearTimeout(state.timers.get(key));
  state.timers.set(
    key,
    setTimeout(() => {
      state.timers.delete(key);
      fn().catch((error) => {
        if (error.status !== -1 && error.status !== 401) console.warn(key, error.message);
      });
    }, DEBOUNCE_MS),
  );
}

// --- events ----------------------------------------------------------------------------------

function handleEvent(message) {
  let event;
  try {
    event = JSON.parse(message.data);
  } catch {
    return;
  }
  const id = Number(event.id || message.lastEventId || 0);
  if (id) {
    if (id <= state.lastEventId) return; // seen already
    state.lastEventId = id;
  }
  const type = String(event.type || message.type);
  const payload = event.payload || {};
  if (type.startsWith("job.")) onJobEvent(payload);
  else if (type === "sync_run.module") onModuleEvent(payload);
  else if (type === "sync_run.log") {
    const runId = payload.run_id;
    if (runId) debounce(`run:${runId}`, () => refreshRun(runId));
  } else if (type.startsWith("sync_run.")) onRunStatusEvent(payload);
}

function onJobEvent(payload) {
  if (!payload.id || (payload.user_id && payload.user_id !== state.me.user_id)) return;
  const known = state.jobs.get(payload.id);
  // An event's outputs are stored records without links (links expire; events are kept):
  // the job read from REST brings the signed ones.
  const { outputs, ...rest } = payload;
  mergeJob(rest);
  // Events carry no input (the prompt) either: read the whole job once, and when outputs come.
  const newOutputs = (outputs || []).length > ((known && known.outputs) || []).length;
  if (!known || !known.input || newOutputs) {
    debounce(`job:${payload.id}`, () => refreshJob(payload.id));
  }
}

function onRunStatusEvent(payload) {
  const runId = payload.run_id || payload.id;
  if (!runId) return;
  if (state.runs.has(runId)) mergeRun({ ...payload, id: runId });
  debounce(`run:${runId}`, () => refreshRun(runId));
}

function onModuleEvent(payload) {
  const run = state.runs.get(payload.run_id);
  if (!run) {
    debounce(`run:${payload.run_id}`, () => refreshRun(payload.run_id));
    return;
  }
  if (payload.current_module !== undefined && RUN_RANK[run.status] < 2) {
    run.current_module = payload.current_module;
  }
  if (payload.module && payload.progress) mergeModule(run, payload.module, payload.progress);
  renderRun(run);
}

// --- jobs ------------------------------------------------------------------------------------

async function refreshJobs() {
  const page = await api(`/v1/jobs?limit=${MAX_JOBS}`);
  for (const job of page.items) {
    if (job.user_id === state.me.user_id) mergeJob(job);
  }
}

async function refreshJob(id) {
  mergeJob(await api(`/v1/jobs/${encodeURIComponent(id)}`));
}

function mergeJob(incoming) {
  const old = state.jobs.get(incoming.id);
  if (old && (JOB_RANK[incoming.status] ?? 0) < (JOB_RANK[old.status] ?? 0)) return; // stale
  const job = old || {};
  for (const [k, v] of Object.entries(incoming)) if (v !== undefined) job[k] = v;
  state.jobs.set(job.id, job);
  renderJob(job);
}

const isTerminal = (job) => JOB_RANK[job.status] === 4;
const parseTime = (s) => (s ? Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(s) ? s : `${s}Z`) : 0);
const shortId = (id) => String(id).slice(0, 8);

const outputOf = (job, index) => ((job && job.outputs) || []).find((o) => o.index === index);

// An image given as one of our outputs (upscale of a result) loads through that output's
// signed link, read from the job.
async function sourceSrc(url) {
  const match = OUTPUT_PATH.exec(url || "");
  if (!match) return url;
  const jobId = decodeURIComponent(match[1]);
  const index = Number(match[2]);
  if (!outputOf(state.jobs.get(jobId), index)) await refreshJob(jobId);
  const output = outputOf(state.jobs.get(jobId), index);
  if (!output) throw new Error(`job ${shortId(jobId)} has no output ${index}`);
  return output.url;
}

// Links expire (LINK_TTL_SECONDS): a file that fails to load is tried once more with the
// job's fresh link; `failed` runs when that doesn't help.
function retryWithFreshLink(el, jobId, index, failed) {
  if (el.dataset.retried) {
    failed();
    return;
  }
  el.dataset.retried = "true";
  refreshJob(jobId)
    .then(() => {
      const output = outputOf(state.jobs.get(jobId), index);
      if (output && output.url !== el.getAttribute("src")) el.src = output.url;
      else failed();
    })
    .catch(failed);
}

function workflowUrl(item, prefix) {
  if (item.workflow_url) return item.workflow_url;
  const me = state.me;
  if (!me || !me.temporal_ui_url) return null;
  const ns = encodeURIComponent(me.temporal_namespace);
  return `${me.temporal_ui_url}/namespaces/${ns}/workflows/${prefix}${item.id}`;
}

function describeJob(job) {
  const input = job.input || {};
  if (input.prompt) return input.prompt;
  const image = input.image || input.input_image;
  if (image) {
    const match = OUTPUT_PATH.exec(image);
    const from = match ? `output ${match[2]} of job ${shortId(match[1])}` : image;
    return `${input.scale ? `${input.scale}× ` : ""}from ${from}`;
  }
  return input.destination || "";
}

function setChip(chip, status) {
  chip.className = `chip status s-${status}`;
  chip.dataset.status = status;
  chip.replaceChildren();
  if ((JOB_RANK[status] ?? 4) < 4 || status === "RUNNING" || status === "QUEUED") {
    const spinner = document.createElement("span");
    spinner.className = "spinner";
    spinner.setAttribute("aria-hidden", "true");
    chip.append(spinner);
  }
  chip.append(document.createTextNode(status));
}

function renderJob(job) {
  let el = state.jobEls.get(job.id);
  if (!el) {
    el = $("#job-template").content.firstElementChild.cloneNode(true);
    el.dataset.jobId = job.id;
    $(".job-cancel", el).addEventListener("click", () => cancelJob(job.id, el));
    $(".job-compare", el).addEventListener("click", () => showCompare(job.id, true));
    state.jobEls.set(job.id, el);
  }
  el.dataset.status = job.status;
  setChip($(".status", el), job.status);
  $(".job-kind", el).textContent = job.kind || "job";
  $(".job-id", el).textContent = shortId(job.id);
  $(".job-id", el).title = job.id;
  $(".job-desc", el).textContent = describeJob(job);
  const error = $(".job-error", el);
  error.textContent = job.error || "";
  error.hidden = !job.error;
  const started = parseTime(job.created_at);
  $(".job-meta", el).textContent = [
    job.provider,
    started ? new Date(started).toLocaleTimeString() : "",
  ].filter(Boolean).join(" · ");
  const link = $(".temporal-link", el);
  const url = workflowUrl(job, "media-job-");
  link.hidden = !url;
  if (url) {
    link.href = url;
    link.setAttribute("aria-label", `job ${shortId(job.id)} in the Temporal web UI`);
  }
  const cancel = $(".job-cancel", el);
  cancel.hidden = isTerminal(job);
  if (isTerminal(job)) cancel.disabled = false;
  $(".job-compare", el).hidden = !(job.kind === "upscale" && job.status === "succeeded");
  renderMedia(job, el);
  placeJob(job, el);
  if (job.status === "succeeded") {
    renderOutputChoices();
    if (job.kind === "upscale" && (state.compareJobId === null || state.compareJobId === job.id)) {
      showCompare(job.id, false);
    }
  }
}

function renderMedia(job, el) {
  const media = $(".job-media", el);
  const outputs = job.status === "succeeded" ? job.outputs || [] : [];
  const signature = outputs.map((o) => o.index).join(",");
  if (media.dataset.signature === signature) return;
  media.dataset.signature = signature;
  media.replaceChildren();
  for (const output of outputs) {
    const type = output.content_type || "";
    const src = output.url;
    if (type.startsWith("image/")) {
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.alt = `output ${output.index} of ${job.kind} job ${shortId(job.id)}`;
      img.decoding = "async";
      const caption = document.createElement("figcaption");
      caption.className = "dims";
      caption.textContent = "loading…";
      img.addEventListener("load", () => {
        caption.textContent = `${img.naturalWidth} × ${img.naturalHeight}`;
        figure.dataset.loaded = "true";
      });
      img.addEventListener("error", () => {
        retryWithFreshLink(img, job.id, output.index, () => {
          caption.textContent = "could not load the image";
        });
      });
      img.src = src;
      figure.append(img, caption);
      media.append(figure);
    } else if (type.startsWith("video/")) {
      const video = document.createElement("video");
      video.controls = true;
      video.preload = "metadata";
      video.src = src;
      video.addEventListener("error", () => retryWithFreshLink(video, job.id, output.index, () => {}));
      video.setAttribute("aria-label", `video output ${output.index} of job ${shortId(job.id)}`);
      media.append(video);
    } else {
      const link = document.createElement("a");
      link.href = src;
      link.textContent = `output ${output.index} (${type || "file"}, ${formatBytes(output.bytes)})`;
      media.append(link);
    }
  }
}

function formatBytes(n) {
  if (!Number.isFinite(n)) return "?";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function placeJob(job, el) {
  const list = isTerminal(job) ? $("#gallery") : $("#queue");
  if (el.parentElement !== list) list.append(el);
  orderList(list, (a, b) => newestFirst(state.jobs.get(a.dataset.jobId), state.jobs.get(b.dataset.jobId)));
  $("#queue-empty").hidden = $("#queue").children.length > 0;
  $("#gallery-empty").hidden = $("#gallery").children.length > 0;
}

function newestFirst(a, b) {
  return parseTime(b && b.created_at) - parseTime(a && a.created_at) || String(b && b.id).localeCompare(String(a && a.id));
}

// Move only the nodes that are out of place: a moved node keeps its loaded images but loses
// its focus and the scroll position of what it holds (a run's log).
function orderList(list, compare) {
  const sorted = [...list.children].sort(compare);
  sorted.forEach((node, i) => {
    const here = list.children[i];
    if (here !== node) list.insertBefore(node, here);
  });
}

async function cancelJob(id, el) {
  const button = $(".job-cancel", el);
  button.disabled = true;
  button.textContent = "Canceling…";
  try {
    mergeJob(await api(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST", body: {} }));
  } catch (error) {
    button.disabled = false;
    button.textContent = "Cancel";
    if (error.status !== -1) toast(`Could not cancel job ${shortId(id)}: ${error.message}`);
  }
}

function renderOutputChoices() {
  const select = $("#upscale-output");
  const choices = [];
  for (const job of [...state.jobs.values()].sort(newestFirst)) {
    if (job.status !== "succeeded") continue;
    for (const output of job.outputs || []) {
      if (!(output.content_type || "").startsWith("image/")) continue;
      const what = describeJob(job).slice(0, 40) || job.kind;
      choices.push([`${job.id}:${output.index}`, `${job.kind} · ${what} · ${shortId(job.id)} #${output.index}`]);
    }
  }
  const signature = choices.map((c) => c[0]).join("|");
  if (select.dataset.signature === signature) return;
  select.dataset.signature = signature;
  const previous = select.value;
  select.replaceChildren(
    ...choices.map(([value, label]) => {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = label;
      return option;
    }),
  );
  if (choices.some((c) => c[0] === previous)) select.value = previous;
}

// --- upscale comparison ------------------------------------------------------------------------

function loadImage(img, src) {
  return new Promise((resolve, reject) => {
    if (img.getAttribute("src") === src && img.complete && img.naturalWidth) {
      resolve(img);
      return;
    }
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("could not load"));
    img.src = src;
  });
}

const megapixels = (w, h) => {
  const mp = (w * h) / 1e6;
  return mp < 0.1 ? mp.toFixed(3) : mp.toFixed(2);
};

async function showCompare(jobId, focus) {
  const job = state.jobs.get(jobId);
  if (!job || job.kind !== "upscale" || job.status !== "succeeded" || !(job.outputs || []).length) return;
  const box = $("#compare");
  if (state.compareJobId === jobId && box.dataset.jobId === jobId && !focus) return;
  state.compareJobId = jobId;
  box.dataset.jobId = jobId;
  box.dataset.ready = "false";
  box.hidden = false;
  $("#compare-title").textContent = `Upscale ${shortId(jobId)}: before / after`;
  const input = job.input || {};
  const before = $(".before", box);
  const after = $(".after", box);
  const [statBefore, statAfter, statFactor] = [".stat-before", ".stat-after", ".stat-factor"].map((s) => $(s, box));
  statBefore.textContent = statAfter.textContent = "loading…";
  statFactor.textContent = "…";
  if (focus) box.scrollIntoView({ behavior: "smooth", block: "nearest" });
  const [b, a] = await Promise.allSettled([
    sourceSrc(input.image || input.input_image || "").then((src) => loadImage(before, src)),
    loadImage(after, job.outputs[0].url),
  ]);
  if (state.compareJobId !== jobId) return;
  const size = (r) => (r.status === "fulfilled" ? [r.value.naturalWidth, r.value.naturalHeight] : null);
  const sb = size(b);
  const sa = size(a);
  statBefore.textContent = sb ? `${sb[0]} × ${sb[1]} px · ${megapixels(...sb)} MP` : "the source image could not be loaded";
  statAfter.textContent = sa ? `${sa[0]} × ${sa[1]} px · ${megapixels(...sa)} MP` : "the output could not be loaded";
  if (sb && sa) {
    const pixels = (sa[0] * sa[1]) / (sb[0] * sb[1]);
    const rw = sa[0] / sb[0];
    const rh = sa[1] / sb[1];
    const sides = Math.abs(rw - rh) < 0.01 ? `${rw.toFixed(1)}× per side` : `${rw.toFixed(1)}× wide, ${rh.toFixed(1)}× high`;
    statFactor.textContent = `${pixels.toFixed(1)}× the pixels (${sides})`;
    $(".compare-view", box).style.aspectRatio = `${sa[0]} / ${sa[1]}`;
  } else statFactor.textContent = "n/a";
  box.dataset.ready = "true";
}

// --- sync runs ---------------------------------------------------------------------------------

async function refreshRuns() {
  const page = await api(`/v1/sync-runs?limit=${MAX_RUNS}`);
  for (const run of page.items) mergeRun(run);
  // The list shows stored progress; a run's own page has its live module rows and logs.
  const wanted = page.items.filter((r) => RUN_RANK[r.status] < 2 || !state.runs.get(r.id).detailed);
  await Promise.all(wanted.map((r) => refreshRun(r.id)));
}

async function refreshRun(id) {
  const run = await api(`/v1/sync-runs/${encodeURIComponent(id)}`);
  const merged = mergeRun(run);
  merged.detailed = true;
  const recent = run.recent_logs || [];
  // More lines than the recent ones since we last looked: read the gap from the log.
  if (merged.logMax && recent.length && recent[0].id > merged.logMax + 1) {
    const gap = await api(`/v1/sync-runs/${encodeURIComponent(id)}/logs?after=${merged.logMax}&limit=500`);
    addLogs(merged, gap.items);
  }
  addLogs(merged, recent);
  renderRun(merged);
}

function mergeRun(incoming) {
  let run = state.runs.get(incoming.id);
  const stale = run && (RUN_RANK[incoming.status] ?? 0) < (RUN_RANK[run.status] ?? 0);
  if (!run) {
    run = { id: incoming.id, modules: {}, logs: new Map(), logMax: 0, detailed: false };
    state.runs.set(run.id, run);
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

function renderRun(run) {
  let el = state.runEls.get(run.id);
  if (!el) {
    el = $("#run-template").content.firstElementChild.cloneNode(true);
    el.dataset.runId = run.id;
    $(".run-cancel", el).addEventListener("click", () => cancelRun(run.id, el));
    state.runEls.set(run.id, el);
    $("#runs").append(el);
  }
  const terminal = RUN_RANK[run.status] === 2;
  el.dataset.status = run.status;
  setChip($(".status", el), run.status);
  const window_ = run.mode === "period" && run.start_date ? ` ${run.start_date} … ${run.end_date}` : "";
  $(".run-title", el).textContent = `${run.company_id} · ${run.mode}${window_}`;
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
  error.textContent = run.error_message || "";
  error.hidden = !run.error_message;
  error.classList.toggle("quiet", run.status === "CANCELED");
  renderModules(run, el);
  renderLogs(run, el);
  orderList($("#runs"), (a, b) => newestFirst(state.runs.get(a.dataset.runId), state.runs.get(b.dataset.runId)));
  const runs = $("#runs");
  while (runs.children.length > MAX_RUNS) {
    const last = runs.lastElementChild;
    state.runEls.delete(last.dataset.runId);
    state.runs.delete(last.dataset.runId);
    last.remove();
  }
  $("#runs-empty").hidden = runs.children.length > 0;
}

function renderModules(run, el) {
  const list = $(".modules", el);
  for (const [name, progress] of Object.entries(run.modules)) {
    let item = list.querySelector(`[data-module="${CSS.escape(name)}"]`);
    if (!item) {
      item = document.createElement("li");
      item.className = "module";
      item.dataset.module = name;
      item.innerHTML =
        '<span class="module-icon" aria-hidden="true"></span><span class="module-name"></span>' +
        '<span class="visually-hidden module-status"></span><span class="module-counts"></span>' +
        '<span class="module-error"></span>';
      $(".module-name", item).textContent = name;
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

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function renderLogs(run, el) {
  const list = $(".run-logs", el);
  const shown = Number(list.dataset.max || 0);
  const fresh = [...run.logs.values()].filter((l) => l.id > shown).sort((a, b) => a.id - b.id);
  if (!fresh.length) return;
  const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  for (const line of fresh) {
    const item = document.createElement("li");
    item.className = `log log-${line.level}`;
    const at = parseTime(line.at);
    item.textContent = `${at ? new Date(at).toLocaleTimeString() : ""} ${line.level}${line.module ? ` ${line.module}` : ""}: ${line.message}`;
    list.append(item);
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
    mergeRun(await api(`/v1/sync-runs/${encodeURIComponent(id)}/cancel`, { method: "POST" }));
    debounce(`run:${id}`, () => refreshRun(id));
  } catch (error) {
    button.disabled = false;
    button.textContent = "Cancel";
    if (error.status !== -1) toast(`Could not cancel run ${shortId(id)}: ${error.message}`);
  }
}

// --- forms -------------------------------------------------------------------------------------

function fillSelect(selects, values) {
  for (const select of selects) {
    select.replaceChildren(
      ...values.map((value) => {
        const option = document.createElement("option");
        option.value = option.textContent = value;
        return option;
      }),
    );
  }
}

function formResult(form, text, { error = false, jobId, runId } = {}) {
  const result = $(".form-result", form);
  result.textContent = text;
  result.classList.toggle("error", error);
  delete result.dataset.jobId;
  delete result.dataset.runId;
  if (jobId) result.dataset.jobId = jobId;
  if (runId) result.dataset.runId = runId;
}

async function submitJob(form, body) {
  const button = $("button[type=submit]", form);
  button.disabled = true;
  formResult(form, "Starting…");
  try {
    const job = await api("/v1/jobs", { method: "POST", body });
    mergeJob(job); // in the queue at once, before any event
    if (job.kind === "upscale") state.compareJobId = job.id;
    formResult(form, `Started job ${shortId(job.id)}.`, { jobId: job.id });
  } catch (error) {
    if (error.status !== -1) formResult(form, `Could not start: ${error.message}`, { error: true });
  } finally {
    button.disabled = false;
  }
}

function optionalInt(value) {
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

function wireForms() {
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    connect($("#api-key").value);
  });
  $("#key-forget").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    $("#api-key").value = "";
    disconnect();
    showNotice("Key forgotten. Enter an API key to start.");
  });

  $("#gen-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const input = { prompt: form.prompt.value.trim() };
    const width = optionalInt(form.width.value);
    const height = optionalInt(form.height.value);
    if (width) input.width = width;
    if (height) input.height = height;
    submitJob(form, { kind: "generation", input, provider: form.provider.value || undefined });
  });

  const upscale = $("#upscale-form");
  for (const radio of upscale.querySelectorAll("input[name=source]")) {
    radio.addEventListener("change", () => {
      const fromUrl = upscale.source.value === "url";
      $(".source-url", upscale).hidden = !fromUrl;
      $(".source-output", upscale).hidden = fromUrl;
      upscale.url.required = fromUrl;
    });
  }
  upscale.addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    let image;
    if (form.source.value === "url") image = form.url.value.trim();
    else {
      const [jobId, index] = (form.output.value || "").split(":");
      if (!jobId) {
        formResult(form, "No finished image yet: generate one first, or give a URL.", { error: true });
        return;
      }
      image = `${state.me.public_base_url}/v1/jobs/${jobId}/outputs/${index}`;
    }
    const input = { image, scale: Number(form.scale.value) };
    submitJob(form, { kind: "upscale", input, provider: form.provider.value || undefined });
  });

  $("#sync-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const button = $("button[type=submit]", form);
    button.disabled = true;
    formResult(form, "Starting…");
    try {
      const run = await api("/v1/sync-runs", {
        method: "POST",
        body: { company_id: form.company.value, mode: "period", month: form.month.value },
      });
      mergeRun(run);
      debounce(`run:${run.id}`, () => refreshRun(run.id));
      formResult(form, `Started run ${shortId(run.id)}.`, { runId: run.id });
    } catch (error) {
      if (error.status !== -1) formResult(form, `Could not start: ${error.message}`, { error: true });
    } finally {
      button.disabled = false;
    }
  });

  const range = $("#compare-range");
  range.addEventListener("input", () => {
    $(".compare-view").style.setProperty("--pos", `${range.value}%`);
  });
}

// --- start -------------------------------------------------------------------------------------

wireForms();
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") reconnectSoon();
});
window.addEventListener("online", reconnectSoon);

// A small hook for tests and debugging: drop the live stream as a network failure would.
window.autosync = {
  dropStream: () => streamDown(),
  get connection() {
    return state.conn;
  },
  get lastEventId() {
    return state.lastEventId;
  },
};

const saved = localStorage.getItem(KEY_STORAGE) || "";
$("#api-key").value = saved;
connect(saved);
