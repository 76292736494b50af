// Schedules (admins): each company's incremental sync on a Temporal Schedule. List, create,
// pause / resume, re-time, trigger now, delete (asked first in a <dialog>).

import { api, enc, worthShowing } from "./api.js";
import { $, confirmDialog, element, fillSelect, setResult, toast } from "./util.js";
import { on, state } from "./state.js";
import { onRefresh } from "./stream.js";

const REFRESH_MS = 10_000;
let lastRead = 0;

async function refreshSchedules(force = false) {
  if (!state.me || !state.me.is_admin) return;
  if (!force && Date.now() - lastRead < REFRESH_MS) return; // Temporal is asked, not the DB
  lastRead = Date.now();
  render(await api("/v1/schedules"));
}

function render(schedules) {
  const list = $("#schedules");
  const items = schedules.map((s) => {
    const status = element("span", { class: `chip ${s.paused ? "s-paused" : "s-active"}`, text: s.paused ? "paused" : "active" });
    const next = (s.next_runs || [])[0];
    const every = element("input", {
      type: "number", min: 1, max: 10080, value: s.every_minutes ?? "", class: "every", inputMode: "numeric",
      id: `every-${s.company_id}`,
    });
    const act = (label, fn, cls = "secondary") => {
      const b = element("button", { type: "button", class: cls, text: label });
      b.setAttribute("aria-label", `${label} the schedule of ${s.company_id}`);
      b.addEventListener("click", async () => {
        b.disabled = true;
        try {
          await fn();
        } catch (error) {
          if (worthShowing(error)) toast(`${label} ${s.company_id}: ${error.message}`);
        } finally {
          b.disabled = false;
        }
      });
      return b;
    };
    const path = `/v1/schedules/${enc(s.company_id)}`;
    const retime = element("form", { class: "retime" },
      element("label", { for: every.id, text: "Every (minutes)" }), every,
      element("button", { type: "submit", class: "secondary", text: "Save" }));
    retime.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await api(path, { method: "PATCH", body: { every_minutes: Number(every.value) } });
        await refreshSchedules(true);
      } catch (error) {
        if (worthShowing(error)) toast(`Re-time ${s.company_id}: ${error.message}`);
      }
    });
    return element("li", { class: "schedule card", "data-company": s.company_id, "data-paused": String(s.paused) },
      element("div", { class: "run-head" }, status, element("strong", { text: s.company_id }),
        element("span", { class: "hint", text: `every ${s.every_minutes} min` })),
      element("p", { class: "hint", text: next ? `next run ${new Date(next).toLocaleString()}` : "no run due" }),
      s.note ? element("p", { class: "hint schedule-note", text: s.note }) : null,
      retime,
      element("div", { class: "button-row" },
        s.paused
          ? act("Resume", async () => { await api(`${path}/resume`, { method: "POST" }); await refreshSchedules(true); })
          : act("Pause", async () => { await api(`${path}/pause`, { method: "POST" }); await refreshSchedules(true); }),
        act("Run now", async () => {
          await api(`${path}/trigger`, { method: "POST" });
          toast(`Started a run of ${s.company_id}'s schedule.`, "info");
          await refreshSchedules(true);
        }),
        act("Delete", async () => {
          if (!(await confirmDialog(`Delete the schedule of ${s.company_id}? Runs already started go on.`))) return;
          await api(path, { method: "DELETE" });
          await refreshSchedules(true);
        }, "danger")));
  });
  list.replaceChildren(...items);
  $("#schedules-empty").hidden = items.length > 0;
}

async function create(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const result = $(".form-result", form);
  setResult(result, "Creating…");
  try {
    const made = await api("/v1/schedules", {
      method: "POST",
      body: { company_id: form.company.value, every_minutes: Number(form.every.value), paused: form.paused.checked },
    });
    setResult(result, `Created: ${made.company_id} every ${made.every_minutes} min.`);
    await refreshSchedules(true);
  } catch (error) {
    if (error.status !== -1) setResult(result, `Could not create: ${error.message}`, { error: true });
  }
}

export function wireSchedules() {
  $("#schedule-form").addEventListener("submit", create);
  on("connected", (me) => {
    if (!me.is_admin) return;
    fillSelect($("#schedule-company"), me.companies);
    refreshSchedules(true).catch((error) => {
      if (worthShowing(error)) toast(`Could not list schedules: ${error.message}`);
    });
  });
  on("disconnected", () => {
    $("#schedules").replaceChildren();
    lastRead = 0;
    setResult($("#schedule-form .form-result"), "");
  });
  onRefresh(() => refreshSchedules(false));
}
