// autosync dashboard: the entry point. Plain ES modules, no build step, no dependencies:
//   api.js (REST client) · stream.js (live stream, polling fallback) · health.js (header badge)
//   queue.js (queue and history) · gallery.js · forms.js · compare.js · sync.js (sync runs)
//   schedules.js · pullsync.js · recovery.js — each wires itself to the events in state.js.
//
// The API key only ever travels in the Authorization header: images and videos load from the
// signed links the API puts in each job's outputs, and the stream opens with a short-lived
// token.

import { api } from "./api.js";
import { wireCompare } from "./compare.js";
import { wireForms } from "./forms.js";
import { wireGallery } from "./gallery.js";
import { wireHealth } from "./health.js";
import { wirePullSync } from "./pullsync.js";
import { wireQueue } from "./queue.js";
import { wireRecovery } from "./recovery.js";
import { wireSchedules } from "./schedules.js";
import { emit, on, state } from "./state.js";
import { closeStream, openStream, reconnectSoon, refreshAll, setConn } from "./stream.js";
import { wireSync } from "./sync.js";
import { $, cancelDebounced } from "./util.js";

const KEY_STORAGE = "autosync.apiKey";

function showNotice(text) {
  const notice = $("#key-help");
  notice.textContent = text;
  notice.hidden = !text;
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
  $("#admin-col").hidden = !me.is_admin;
  $("#main").classList.toggle("with-admin", me.is_admin);
  emit("connected", me);
  openStream();
  refreshAll();
}

function disconnect() {
  state.session += 1;
  closeStream();
  cancelDebounced();
  state.me = null;
  state.jobs.clear();
  emit("disconnected");
  $("#main").hidden = true;
  $("#whoami").textContent = "";
  setConn("idle");
}

function wireKey() {
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
  on("key-rejected", (message) => {
    disconnect();
    showNotice(`The API key was rejected (${message}). Enter a valid key and connect again.`);
  });
}

wireKey();
wireHealth();
wireQueue();
wireForms();
wireGallery();
wireCompare();
wireSync();
wireSchedules();
wirePullSync();
wireRecovery();
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") reconnectSoon();
});
window.addEventListener("online", reconnectSoon);

const saved = localStorage.getItem(KEY_STORAGE) || "";
$("#api-key").value = saved;
connect(saved);
