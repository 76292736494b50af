// The gallery: finished jobs' outputs as WebP thumbnails (lazy-loaded; the full file opens in a
// <dialog>), videos with a poster and the player, trainings as a card with their stored
// weights. Succeeded jobs only unless asked; filtered by kind; paged by cursor ("Load more").

import { api, worthShowing } from "./api.js";
import { isTerminal, mergeJob, outputOf, refreshJob, sourceOf, sourceSrc } from "./jobs.js";
import { openCompare, preload } from "./compare.js";
import { $, element, formatBytes, newestFirst, orderList, setChip, shortId, toast } from "./util.js";
import { on, state } from "./state.js";

const PAGE = 12;
const tiles = new Map();
const gallery = { next: null, ticket: 0 };

function wanted(job) {
  const kind = $("#g-kind").value;
  if (kind && job.kind !== kind) return false;
  return $("#g-all").checked ? isTerminal(job) : job.status === "succeeded";
}

function query(cursor) {
  const params = new URLSearchParams({ limit: String(PAGE) });
  if ($("#g-kind").value) params.set("kind", $("#g-kind").value);
  if (!$("#g-all").checked) params.set("status", "succeeded");
  if (cursor) params.set("cursor", cursor);
  return params;
}

async function load(more) {
  const ticket = ++gallery.ticket;
  const page = await api(`/v1/jobs?${query(more ? gallery.next : null)}`);
  if (ticket !== gallery.ticket) return;
  if (!more) {
    for (const el of tiles.values()) el.remove();
    tiles.clear();
  }
  gallery.next = page.next_cursor;
  for (const item of page.items) {
    const job = mergeJob(item);
    if (wanted(job)) place(job);
  }
  render();
}

function render() {
  $("#gallery").dataset.query = query(null).toString(); // what it shows, for tests and tools
  $("#gallery-empty").hidden = tiles.size > 0;
  $("#gallery-more").hidden = !gallery.next;
}

function place(job) {
  let el = tiles.get(job.id);
  if (!wanted(job)) {
    if (el) {
      el.remove();
      tiles.delete(job.id);
    }
    return;
  }
  if (!el) {
    el = element("li", { class: "tile card", "data-job-id": job.id });
    tiles.set(job.id, el);
    $("#gallery").append(el);
  }
  drawTile(job, el);
  orderList($("#gallery"), (a, b) => newestFirst(state.jobs.get(a.dataset.jobId), state.jobs.get(b.dataset.jobId)));
}

function drawTile(job, el) {
  const signature = `${job.status}|${(job.outputs || []).map((o) => o.url).join(",")}`;
  if (el.dataset.signature === signature) return;
  el.dataset.signature = signature;
  el.dataset.status = job.status;
  el.dataset.kind = job.kind;
  const chip = element("span");
  setChip(chip, job.status);
  const head = element("div", { class: "tile-head" }, chip, element("strong", { text: job.kind }),
    element("span", { class: "mono job-id", text: shortId(job.id), title: job.id }));
  const body = element("div", { class: "tile-media" });
  if (job.status !== "succeeded") {
    body.append(element("p", { class: "job-error", text: job.error || job.status }));
  } else if (job.kind === "training") {
    body.append(trainingCard(job));
  } else {
    for (const output of job.outputs || []) body.append(mediaOf(job, output));
  }
  const prompt = (job.input || {}).prompt;
  const foot = element("div", { class: "tile-foot" });
  if (prompt) foot.append(element("p", { class: "tile-prompt", text: prompt, title: prompt }));
  el.replaceChildren(head, body, foot);
  if (job.status === "succeeded" && (job.kind === "upscale" || job.kind === "edit")) offerCompare(job, foot);
}

function mediaOf(job, output) {
  const type = output.content_type || "";
  const label = `output ${output.index} of ${job.kind} job ${shortId(job.id)}`;
  if (type.startsWith("image/")) {
    const img = element("img", {
      src: output.thumbnail_url || output.url,
      alt: label,
      loading: "lazy",
      decoding: "async",
    });
    if (output.width && output.height) {
      img.width = Math.min(200, output.width);
      img.height = Math.round((img.width / output.width) * output.height);
    }
    img.addEventListener("error", () => retryWithFreshLink(img, job.id, output.index, true), { once: true });
    const open = element("button", { type: "button", class: "thumb", "aria-label": `Open ${label}` }, img);
    open.addEventListener("click", () => openViewer(job.id, output.index));
    const dims = output.width && output.height ? `${output.width} × ${output.height}` : formatBytes(output.bytes);
    return element("figure", {}, open, element("figcaption", { class: "dims", text: dims }));
  }
  if (type.startsWith("video/")) {
    const video = element("video", { controls: true, preload: output.thumbnail_url ? "none" : "metadata", src: output.url });
    if (output.thumbnail_url) video.poster = output.thumbnail_url;
    video.setAttribute("aria-label", `video ${label}`);
    video.addEventListener("error", () => retryWithFreshLink(video, job.id, output.index, false), { once: true });
    return element("figure", {}, video, element("figcaption", { class: "dims", text: `${type} · ${formatBytes(output.bytes)}` }));
  }
  return element("a", { href: output.url, text: `output ${output.index} (${type || "file"}, ${formatBytes(output.bytes)})` });
}

function trainingCard(job) {
  const data = job.output_data || {};
  const box = element("div", { class: "training" });
  const version = data.version || data.destination || (job.input || {}).destination;
  box.append(element("p", { class: "training-model", text: version ? `Trained: ${version}` : "Training finished" }));
  const total = (job.outputs || []).reduce((n, o) => n + (o.bytes || 0), 0);
  const list = element("ul", { class: "plain-list training-files" });
  for (const output of job.outputs || []) {
    const name = (output.key || "").split("/").pop() || `file ${output.index}`;
    list.append(element("li", {}, element("a", { href: output.url, download: name, text: name }),
      element("span", { class: "hint", text: ` ${formatBytes(output.bytes)}` })));
  }
  box.append(list, element("p", { class: "hint training-size", text: `${(job.outputs || []).length} stored files · ${formatBytes(total)}` }));
  return box;
}

// Links expire (LINK_TTL_SECONDS): a file that fails to load is tried once with a fresh link.
function retryWithFreshLink(el, jobId, index, thumbnail) {
  refreshJob(jobId)
    .then((job) => {
      const output = outputOf(job, index);
      const url = output && (thumbnail ? output.thumbnail_url || output.url : output.url);
      if (url && url !== el.getAttribute("src")) el.src = url;
    })
    .catch(() => {});
}

function openViewer(jobId, index) {
  const job = state.jobs.get(jobId);
  const output = outputOf(job, index);
  if (!output) return;
  const dialog = $("#viewer");
  $("#viewer-title").textContent = `${job.kind} ${shortId(job.id)} · output ${index}`;
  const img = element("img", { src: output.url, alt: `output ${index} of ${job.kind} job ${shortId(job.id)}, full size` });
  const name = (output.key || "").split("/").pop() || `output-${index}`;
  $(".viewer-body", dialog).replaceChildren(
    img,
    element("p", {}, element("a", { href: output.url, download: name, text: `Download ${name} (${formatBytes(output.bytes)})` })),
  );
  dialog.showModal();
}

// "Compare" only when both images load: a missing source offers nothing to compare.
async function offerCompare(job, foot) {
  const output = (job.outputs || [])[0];
  if (!output) return;
  let before;
  let after;
  try {
    const beforeSrc = await sourceSrc(sourceOf(job));
    [before, after] = await Promise.all([preload(beforeSrc), preload(output.url)]);
  } catch {
    foot.append(element("p", { class: "hint no-compare", text: "no comparison: the source image is not available" }));
    return;
  }
  const button = element("button", { type: "button", class: "secondary job-compare", text: "Compare" });
  button.setAttribute("aria-label", `Compare ${job.kind} ${shortId(job.id)} with its source`);
  button.addEventListener("click", () => openCompare(job, before, after));
  foot.append(button);
}

export function wireGallery() {
  const reload = () =>
    load(false).catch((error) => {
      if (worthShowing(error)) toast(`Could not load the gallery: ${error.message}`);
    });
  $("#g-kind").addEventListener("change", reload);
  $("#g-all").addEventListener("change", reload);
  $("#gallery-more").addEventListener("click", () =>
    load(true).catch((error) => {
      if (worthShowing(error)) toast(`Could not load more: ${error.message}`);
    }),
  );
  on("connected", reload);
  on("disconnected", () => {
    tiles.clear();
    $("#gallery").replaceChildren();
    gallery.next = null;
  });
  on("job", (job) => {
    // Outputs arrive with the job read from REST (events carry no links).
    if (isTerminal(job) && (job.status !== "succeeded" || (job.outputs || []).length > 0)) place(job);
    render();
  });
}


