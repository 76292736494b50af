// The new-job form: every kind the API accepts (generation, edit, upscale, video, training),
// with the providers that can run the chosen kind and their default model from /v1/me.
// Missing fields are said next to the field before anything is sent; the API's 422s land
// next to the field they name. Each attempt clears the previous attempt's messages.

import { api } from "./api.js";
import { mergeJob, describeJob } from "./jobs.js";
import { $, $$, fillSelect, newestFirst, setResult, shortId } from "./util.js";
import { on, state } from "./state.js";

// What each provider's default models call their inputs (providers/*.py REQUIRED_INPUT).
const INPUT_NAMES = {
  replicate: { edit: "input_image", upscale: "image", images: "input_images" },
  fal: { edit: "image_url", upscale: "image_url", images: "images_data_url" },
  kie: { edit: "image_urls", upscale: "image_url" },
};
const LIST_INPUTS = new Set(["image_urls"]);
// An input (or its 422) and the field that shows its message.
const FIELD_OF = {
  prompt: "prompt", image: "image", input_image: "image", image_url: "image", image_urls: "image",
  destination: "destination", input_images: "images", images_data_url: "images",
};

const form = () => $("#job-form");

function kindSupported(provider, kind) {
  const models = (state.me && state.me.models) || {};
  return Boolean(models[provider] && models[provider][kind]);
}

function showKind() {
  const f = form();
  const kind = f.kind.value;
  for (const el of $$("[data-kinds]", f)) el.hidden = !el.dataset.kinds.split(" ").includes(kind);
  const providers = (state.me ? state.me.providers : []).filter((p) => kindSupported(p, kind));
  fillSelect(f.provider, providers);
  showProvider();
  $("#job-submit").textContent = { generation: "Generate", edit: "Edit", upscale: "Upscale", video: "Make video", training: "Train" }[kind];
  clearMessages();
}

function showProvider() {
  const f = form();
  const provider = f.provider.value;
  const models = ((state.me && state.me.models) || {})[provider] || {};
  const model = models[f.kind.value] || "";
  f.model.placeholder = model ? `default: ${model}` : "";
  f.model.value = "";
  fillSelect($("#job-models"), model ? [model] : []);
  for (const el of $$("[data-providers]", f)) el.hidden = !el.dataset.providers.split(" ").includes(provider);
}

function clearMessages() {
  for (const p of $$(".field-error", form())) p.textContent = "";
  for (const input of $$("[aria-invalid]", form())) input.removeAttribute("aria-invalid");
  setResult($(".form-result", form()), "");
}

function fieldError(field, message) {
  const p = $(`.field-error[data-field="${field}"]`, form());
  if (!p || p.closest("[hidden]")) return false;
  p.textContent = p.textContent ? `${p.textContent}; ${message}` : message;
  const input = document.getElementById(p.id.replace("err-", "job-"));
  (input || $(`[aria-describedby~="${p.id}"]`, form()))?.setAttribute("aria-invalid", "true");
  return true;
}

function sourceImage(f) {
  if (f.source.value === "url") return f.url.value.trim();
  const [jobId, index] = (f.output.value || "").split(":");
  return jobId ? `${state.me.public_base_url}/v1/jobs/${jobId}/outputs/${index}` : "";
}

// The request for the form as it stands, or null after saying what is missing.
function request() {
  const f = form();
  const kind = f.kind.value;
  const provider = f.provider.value;
  const names = INPUT_NAMES[provider] || {};
  const input = {};
  let missing = false;
  const need = (field, value, message) => {
    if (value) return value;
    missing = fieldError(field, message) || missing;
    return value;
  };
  if (["generation", "edit", "video"].includes(kind)) input.prompt = need("prompt", f.prompt.value.trim(), "Write a prompt.");
  if (kind === "generation") {
    for (const side of ["width", "height"]) {
      const n = Number.parseInt(f[side].value, 10);
      if (Number.isFinite(n) && n > 0) input[side] = n;
    }
  }
  if (kind === "edit" || kind === "upscale") {
    const image = need("image", sourceImage(f), f.source.value === "url" ? "Give the image's URL." : "No finished image yet: generate one first, or give a URL.");
    const name = names[kind] || "image";
    input[name] = LIST_INPUTS.has(name) ? [image] : image;
    if (kind === "upscale") input.scale = Number(f.scale.value);
  }
  if (kind === "training") {
    if (provider === "replicate") input.destination = need("destination", f.destination.value.trim(), "Name the model to train into (owner/name).");
    input[names.images || "input_images"] = need("images", f.images.value.trim(), "Give the URL of a .zip of images.");
  }
  if (missing) return null;
  const body = { kind, input, provider: provider || undefined };
  if (f.model.value.trim()) body.model = f.model.value.trim();
  return body;
}

async function submit(event) {
  event.preventDefault();
  clearMessages();
  const f = form();
  const result = $(".form-result", f);
  const body = request();
  if (!body) {
    setResult(result, "Fix the fields marked above.", { error: true });
    return;
  }
  const button = $("#job-submit");
  button.disabled = true;
  setResult(result, "Starting…");
  try {
    const job = mergeJob(await api("/v1/jobs", { method: "POST", body })); // in the queue at once
    setResult(result, `Started ${job.kind} job ${shortId(job.id)}.`, { jobId: job.id, kind: job.kind });
  } catch (error) {
    if (error.status === -1) return;
    let placed = false;
    for (const { field, message } of error.fields || []) {
      const last = field.split(".").pop();
      placed = fieldError(FIELD_OF[last] || "", message) || placed;
    }
    if (!placed) {
      const named = /input\.(\w+)/.exec(error.message);
      if (named && FIELD_OF[named[1]]) placed = fieldError(FIELD_OF[named[1]], error.message);
    }
    setResult(result, `Could not start: ${error.message}`, { error: true });
  } finally {
    button.disabled = false;
  }
}

// The finished images a job can start from, newest first.
function renderOutputChoices() {
  const select = form().output;
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
  fillSelect(select, choices);
}

export function wireForms() {
  const f = form();
  f.addEventListener("submit", submit);
  f.kind.addEventListener("change", showKind);
  f.provider.addEventListener("change", () => {
    showProvider();
    clearMessages();
  });
  for (const radio of $$("input[name=source]", f)) {
    radio.addEventListener("change", () => {
      const fromUrl = f.source.value === "url";
      $(".source-url", f).hidden = !fromUrl;
      $(".source-output", f).hidden = fromUrl;
    });
  }
  on("connected", showKind);
  on("disconnected", () => {
    clearMessages();
    f.output.replaceChildren();
    delete f.output.dataset.signature;
  });
  on("job", (job) => {
    if (job.status === "succeeded") renderOutputChoices();
  });
}


