// Recovery (admins): check what the sweep would do now, or run it, and list what it found.
// Jobs it marks show their recovery state in the queue and the history (jobs.js).

import { api } from "./api.js";
import { $, element, setResult, shortId } from "./util.js";
import { on } from "./state.js";
import { refreshAll } from "./stream.js";

async function sweep(dryRun) {
  const buttons = [$("#recovery-check"), $("#recovery-trigger")];
  const result = $("#recovery-result");
  for (const b of buttons) b.disabled = true;
  setResult(result, dryRun ? "Checking…" : "Running the sweep…");
  $("#recovery-items").replaceChildren();
  try {
    const report = await api(`/v1/recovery/${dryRun ? "check" : "trigger"}`, { method: "POST" });
    if (report.status === "running") {
      setResult(result, report.message);
      return;
    }
    const counts = Object.entries(report.counts || {}).map(([action, n]) => `${n} ${action.replaceAll("_", " ")}`);
    setResult(result,
      `${dryRun ? "Check" : "Sweep"}: ${report.checked} jobs checked; ${counts.length ? counts.join(", ") : "nothing to do"}.`,
      { workflowId: report.workflow_id });
    $("#recovery-items").replaceChildren(...(report.items || []).map((item) =>
      element("li", { "data-job-id": item.job_id,
        text: `${item.kind} ${shortId(item.job_id)} (${item.provider}, ${item.status}): ${item.problem} → ${item.action}${item.result ? ` (${item.result})` : ""}${item.detail ? ` · ${item.detail}` : ""}` })));
    if (!dryRun) refreshAll();
  } catch (error) {
    if (error.status !== -1) setResult(result, `Could not ${dryRun ? "check" : "sweep"}: ${error.message}`, { error: true });
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

export function wireRecovery() {
  $("#recovery-check").addEventListener("click", () => sweep(true));
  $("#recovery-trigger").addEventListener("click", () => sweep(false));
  on("disconnected", () => {
    setResult($("#recovery-result"), "");
    $("#recovery-items").replaceChildren();
  });
}
