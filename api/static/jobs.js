// Jobs as the page knows them: one merged record per id (REST answers and live events meet in
// mergeJob: statuses only move forward, so a late poll never undoes a newer event), and the
// card every list draws them with (queue, history), with its cancel and retry buttons.

import { api, enc, worthShowing } from "./api.js";
import { $, ago, parseTime, setChip, shortId, toast } from "./util.js";
import { emit, state } from "./state.js";

export const JOB_RANK = { queued: 0, submitted: 1, processing: 2, storing: 3, succeeded: 4, failed: 4, canceled: 4 };
export const ACTIVE = ["queued", "submitted", "processing", "storing"];
export const isTerminal = (job) => JOB_RANK[job.status] === 4;
export const OUTPUT_PATH = /\/v1\/jobs\/([^/?#]+)\/outputs\/(\d+)/;

export function mergeJob(incoming) {
  const old = state.jobs.get(incoming.id);
  if (old && (JOB_RANK[incoming.status] ?? 0) < (JOB_RANK[old.status] ?? 0)) return old; // stale
  const job = old || {};
  for (const [k, v] of Object.entries(incoming)) if (v !== undefined) job[k] = v;
  state.jobs.set(job.id, job);
  emit("job", job);
  return job;
}

export async function refreshJob(id) {
  return mergeJob(await api(`/v1/jobs/${enc(id)}`));
}

export const outputOf = (job, index) => ((job && job.outputs) || []).find((o) => o.index === index);

// An image given as one of our outputs loads through that output's signed link, read from the job.
export async function sourceSrc(url) {
  const match = OUTPUT_PATH.exec(url || "");
  if (!match) return url;
  const jobId = decodeURIComponent(match[1]);
  const index = Number(match[2]);
  if (!outputOf(state.jobs.get(jobId), index)) await refreshJob(jobId);
  const output = outputOf(state.jobs.get(jobId), index);
  if (!output) throw new Error(`job ${shortId(jobId)} has no output ${index}`);
  return output.url;
}

export const sourceOf = (job) => {
  const input = job.input || {};
  const urls = input.image_urls;
  return input.image || input.input_image || input.image_url || (Array.isArray(urls) ? urls[0] : "") || "";
};

export function describeJob(job) {
  const input = job.input || {};
  if (input.prompt) return input.prompt;
  const image = sourceOf(job);
  if (image) {
    const match = OUTPUT_PATH.exec(image);
    const from = match ? `output ${match[2]} of job ${shortId(match[1])}` : image;
    return `${input.scale ? `${input.scale}× ` : ""}from ${from}`;
  }
  return input.destination || input.images_data_url || "";
}

export function workflowUrl(item, prefix) {
  if (item.workflow_url) return item.workflow_url;
  const me = state.me;
  if (!me || !me.temporal_ui_url) return null;
  return `${me.temporal_ui_url}/namespaces/${enc(me.temporal_namespace)}/workflows/${prefix}${item.id}`;
}

export function jobCard(job) {
  const el = $("#job-template").content.firstElementChild.cloneNode(true);
  el.dataset.jobId = job.id;
  $(".job-cancel", el).addEventListener("click", () => cancelJob(job.id, el));
  $(".job-retry", el).addEventListener("click", () => retryJob(job.id, el));
  renderJobCard(job, el);
  return el;
}

export function renderJobCard(job, el) {
  el.dataset.status = job.status;
  if (job.rerun_of) el.dataset.rerunOf = job.rerun_of;
  setChip($(".status", el), job.status);
  $(".job-kind", el).textContent = job.kind || "job";
  $(".job-id", el).textContent = shortId(job.id);
  $(".job-id", el).title = job.id;
  $(".job-desc", el).textContent = describeJob(job);
  const error = $(".job-error", el);
  error.textContent = job.error || "";
  error.hidden = !job.error;
  const recovery = $(".recovery", el);
  recovery.hidden = !job.recovery_state;
  if (job.recovery_state) {
    recovery.textContent = job.recovery_state.replaceAll("_", " ");
    recovery.className = `chip recovery r-${job.recovery_state}`;
    recovery.title = job.recovery_reason || "";
    if (job.recovery_reason) recovery.setAttribute("aria-label", `${job.recovery_state}: ${job.recovery_reason}`);
  }
  const links = $(".job-links", el);
  const parts = [];
  if (job.rerun_of) parts.push(`retry of ${shortId(job.rerun_of)}`);
  if (job.retried_as) parts.push(`retried as ${shortId(job.retried_as)}`);
  links.textContent = parts.join(" · ");
  links.hidden = !parts.length;
  const started = parseTime(job.created_at);
  const meta = $(".job-meta", el);
  meta.dataset.created = String(started);
  meta.textContent = [job.provider, started ? ago(started) : ""].filter(Boolean).join(" · ");
  meta.title = started ? new Date(started).toLocaleString() : "";
  const link = $(".temporal-link", el);
  const url = workflowUrl(job, "media-job-");
  link.hidden = !url;
  if (url) {
    link.href = url;
    link.setAttribute("aria-label", `job ${shortId(job.id)} in the Temporal web UI`);
  }
  const cancel = $(".job-cancel", el);
  cancel.hidden = isTerminal(job);
  cancel.setAttribute("aria-label", `Cancel job ${shortId(job.id)}`);
  if (isTerminal(job)) cancel.disabled = false;
  const retry = $(".job-retry", el);
  retry.hidden = !(job.status === "failed" || job.status === "canceled");
  retry.setAttribute("aria-label", `Retry job ${shortId(job.id)}`);
}

// Ages move on by themselves.
export function tickAges(root) {
  for (const meta of root.querySelectorAll(".job-meta[data-created]")) {
    const created = Number(meta.dataset.created);
    if (!created) continue;
    const provider = meta.textContent.split(" · ")[0];
    meta.textContent = `${provider} · ${ago(created)}`;
  }
}

async function cancelJob(id, el) {
  const button = $(".job-cancel", el);
  button.disabled = true;
  button.textContent = "Canceling…";
  try {
    mergeJob(await api(`/v1/jobs/${enc(id)}/cancel`, { method: "POST", body: {} }));
  } catch (error) {
    if (worthShowing(error)) toast(`Could not cancel job ${shortId(id)}: ${error.message}`);
  } finally {
    button.disabled = false;
    button.textContent = "Cancel";
  }
}

// POST /v1/jobs/{id}/rerun: a new job with the same request, linked by `rerun_of`.
async function retryJob(id, el) {
  const button = $(".job-retry", el);
  button.disabled = true;
  button.textContent = "Retrying…";
  try {
    const fresh = await api(`/v1/jobs/${enc(id)}/rerun`, { method: "POST", body: {} });
    const old = state.jobs.get(id);
    if (old) mergeJob({ ...old, retried_as: fresh.id });
    mergeJob({ rerun_of: id, ...fresh });
    toast(`Job ${shortId(id)} retried as ${shortId(fresh.id)}.`, "info");
  } catch (error) {
    if (worthShowing(error)) toast(`Could not retry job ${shortId(id)}: ${error.message}`);
  } finally {
    button.disabled = false;
    button.textContent = "Retry";
  }
}


