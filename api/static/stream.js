// The live stream: Server-Sent Events from /v1/events, REST polling every POLL_MS while it is
// down, reconnecting with backoff. EventSource can't send the key in a header, and a key must
// never sit in a URL: the stream opens with a short-lived token from POST /v1/stream-tokens.
//
// Every panel listens for "stream-event" and "refresh" (a poll tick, or the stream (re)opened:
// read what may have happened meanwhile); refreshes never overlap.

import { api } from "./api.js";
import { $, ago, parseTime, plural } from "./util.js";
import { emit, state } from "./state.js";

export const POLL_MS = 2500;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 10000;
const STREAM_TOKEN_MARGIN_MS = 60_000; // a stream token this close to expiry is replaced

// EventSource only hands named events to listeners registered for their name.
const EVENT_TYPES = [
  ...["queued", "submitted", "processing", "storing", "succeeded", "failed", "canceled"].map((s) => `job.${s}`),
  ...["queued", "running", "done", "failed", "canceled", "skipped"].map((s) => `sync_run.${s}`),
  "sync_run.module", "sync_run.log", "project.node_updated",
  ...["registered", "unregistered", "pulled", "inactive", "reactivated", "removed"].map((s) => `pull_client.${s}`),
  "pull_cycle.finished",
];

const stream = {
  source: null,
  token: null, // { token, expiresAt }
  opening: null, // the session whose open is waiting for a token
  backoff: BACKOFF_MIN_MS,
  reconnectTimer: null,
  reconnectAt: 0,
  pollTimer: null,
  tickTimer: null,
  pollError: null,
  everOpened: false,
};
const refreshers = [];

// A panel's reader of its REST state, run on every refresh.
export function onRefresh(fn) {
  refreshers.push(fn);
}

export function setConn(conn) {
  state.conn = conn;
  $("#conn").dataset.state = conn;
  renderConn();
  emit("conn", conn);
}

// The state goes to screen readers when it changes; the ticking countdown is for eyes only.
function renderConn() {
  const box = $("#conn");
  const text = $(".conn-text", box);
  let label = "not connected";
  let countdown = "";
  if (state.conn === "live") label = "live";
  else if (state.conn === "connecting") label = "connecting…";
  else if (state.conn === "polling") {
    const failed = stream.pollError ? `; last poll failed: ${stream.pollError}` : "";
    label = `polling every ${POLL_MS / 1000} s (live stream down${failed})`;
    const secs = Math.max(0, Math.ceil((stream.reconnectAt - Date.now()) / 1000));
    countdown = stream.source ? " · reconnecting…" : ` · reconnecting in ${secs} s`;
  }
  if (text.textContent !== label) text.textContent = label;
  $(".conn-retry", box).textContent = countdown;
  renderMeta();
}

function renderMeta() {
  const last = $("#last-event");
  last.textContent = state.lastEventAt ? `last event ${ago(state.lastEventAt)}` : "no events yet";
  if (state.lastEventAt) last.title = new Date(state.lastEventAt).toLocaleString();
  $("#reconnects").textContent = plural(state.reconnects, "reconnect");
}

async function streamToken() {
  const cached = stream.token;
  if (cached && cached.expiresAt - Date.now() > STREAM_TOKEN_MARGIN_MS) return cached.token;
  const answer = await api("/v1/stream-tokens", { method: "POST" });
  stream.token = { token: answer.token, expiresAt: parseTime(answer.expires_at) };
  return answer.token;
}

export async function openStream() {
  clearTimeout(stream.reconnectTimer);
  stream.reconnectTimer = null;
  const session = state.session;
  if (!state.me || stream.source || stream.opening === session) return;
  stream.opening = session;
  if (state.conn !== "polling") setConn("connecting");
  let token;
  try {
    token = await streamToken();
  } catch (error) {
    // -1: another key took over; 401: the key was rejected (said elsewhere).
    if (session === state.session && error.status !== -1 && error.status !== 401) streamDown();
    return;
  } finally {
    if (stream.opening === session) stream.opening = null;
  }
  if (session !== state.session || !state.me || stream.source) return;
  const params = new URLSearchParams();
  for (const topic of state.me.topics) params.append("topic", topic);
  params.set("token", token);
  // A new EventSource sends no Last-Event-ID, so resume explicitly.
  if (state.lastEventId) params.set("after", String(state.lastEventId));
  const source = new EventSource(`/v1/events?${params}`);
  stream.source = source;
  if (state.conn === "polling") renderConn();
  source.onopen = () => {
    if (source !== stream.source) return;
    if (stream.everOpened) state.reconnects += 1;
    stream.everOpened = true;
    stream.backoff = BACKOFF_MIN_MS;
    stopPolling();
    setConn("live");
    refreshAll(); // anything that happened before the stream was open
  };
  // Any error (refused, dropped, server closed): take over with polling and our own backoff.
  source.onerror = () => {
    if (source === stream.source) streamDown();
  };
  const onMessage = (message) => {
    if (source === stream.source) handleMessage(message);
  };
  source.onmessage = onMessage;
  for (const type of EVENT_TYPES) source.addEventListener(type, onMessage);
}

export function streamDown() {
  if (stream.source) stream.source.close();
  stream.source = null;
  if (!state.me) return;
  clearTimeout(stream.reconnectTimer);
  const delay = Math.round(stream.backoff * (0.8 + Math.random() * 0.4));
  stream.backoff = Math.min(stream.backoff * 2, BACKOFF_MAX_MS);
  stream.reconnectAt = Date.now() + delay;
  stream.reconnectTimer = setTimeout(openStream, delay);
  if (state.conn !== "polling") setConn("polling");
  startPolling();
}

export function closeStream() {
  if (stream.source) stream.source.close();
  stream.source = null;
  stream.token = null;
  stream.opening = null;
  stream.everOpened = false;
  clearTimeout(stream.reconnectTimer);
  stopPolling();
  state.lastEventId = 0;
  state.lastEventAt = 0;
  state.reconnects = 0;
  stream.backoff = BACKOFF_MIN_MS;
}

export function reconnectSoon() {
  if (state.me && !stream.source && state.conn === "polling") {
    stream.backoff = BACKOFF_MIN_MS;
    openStream();
  }
}

function startPolling() {
  if (stream.pollTimer) return;
  stream.pollTimer = setInterval(refreshAll, POLL_MS);
  refreshAll();
}

function stopPolling() {
  clearInterval(stream.pollTimer);
  stream.pollTimer = null;
  stream.pollError = null;
}

let refreshing = null;
let refreshAgain = false;

export function refreshAll() {
  if (!state.me) return Promise.resolve();
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      do {
        refreshAgain = false;
        const results = await Promise.allSettled(refreshers.map((fn) => fn()));
        const failed = results.find((r) => r.status === "rejected");
        if (failed) throw failed.reason;
        stream.pollError = null;
      } while (refreshAgain && state.me);
    } catch (error) {
      if (error.status !== -1 && error.status !== 401) stream.pollError = error.message;
    } finally {
      refreshing = null;
      if (state.conn === "polling") renderConn();
    }
  })();
  return refreshing;
}

function handleMessage(message) {
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
  state.lastEventAt = Date.now();
  renderMeta();
  emit("stream-event", { type: String(event.type || message.type), payload: event.payload || {} });
}

setInterval(() => {
  if (state.me) renderMeta();
  if (state.conn === "polling") renderConn();
}, 1000);

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
