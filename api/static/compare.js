// Before / after for upscales and edits, in a <dialog>: a divider on an <input type=range>,
// zoom and pan applied to both images by one transform (so they stay in step), keyboard
// shortcuts (← → divider, + − zoom, 0 reset), and both files to download. Only ever opened
// with two images that loaded (gallery.js checks before offering it).

import { $, shortId } from "./util.js";

const view = { zoom: 1, x: 0, y: 0, pos: 50 };

// Resolves with the loaded image (its natural size known), rejects when it can't load.
export function preload(src) {
  return new Promise((resolve, reject) => {
    if (!src) {
      reject(new Error("no source"));
      return;
    }
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("could not load"));
    img.src = src;
  });
}

const megapixels = (w, h) => {
  const mp = (w * h) / 1e6;
  return mp < 0.1 ? mp.toFixed(3) : mp.toFixed(2);
};

function apply() {
  const box = $("#compare .compare-view");
  box.style.setProperty("--pos", `${view.pos}%`);
  box.style.setProperty("--zoom", String(view.zoom));
  box.style.setProperty("--x", `${view.x}px`);
  box.style.setProperty("--y", `${view.y}px`);
  $("#compare-range").value = String(view.pos);
  $("#compare-zoom").value = String(view.zoom);
  box.dataset.zoom = String(view.zoom);
}

function setZoom(zoom) {
  view.zoom = Math.min(8, Math.max(1, zoom));
  if (view.zoom === 1) view.x = view.y = 0;
  apply();
}

export function openCompare(job, before, after) {
  const dialog = $("#compare");
  dialog.dataset.jobId = job.id;
  $("#compare-title").textContent = `${job.kind === "edit" ? "Edit" : "Upscale"} ${shortId(job.id)}: before / after`;
  const [b, a] = [$(".before", dialog), $(".after", dialog)];
  b.src = before.src;
  a.src = after.src;
  b.alt = `before: the source of ${job.kind} ${shortId(job.id)}`;
  a.alt = `after: the output of ${job.kind} ${shortId(job.id)}`;
  const sb = [before.naturalWidth, before.naturalHeight];
  const sa = [after.naturalWidth, after.naturalHeight];
  $(".stat-before", dialog).textContent = `${sb[0]} × ${sb[1]} px · ${megapixels(...sb)} MP`;
  $(".stat-after", dialog).textContent = `${sa[0]} × ${sa[1]} px · ${megapixels(...sa)} MP`;
  const pixels = (sa[0] * sa[1]) / (sb[0] * sb[1]);
  const rw = sa[0] / sb[0];
  const rh = sa[1] / sb[1];
  const sides = Math.abs(rw - rh) < 0.01 ? `${rw.toFixed(1)}× per side` : `${rw.toFixed(1)}× wide, ${rh.toFixed(1)}× high`;
  $(".stat-factor", dialog).textContent = `${pixels.toFixed(1)}× the pixels (${sides})`;
  $(".compare-view", dialog).style.aspectRatio = `${sa[0]} / ${sa[1]}`;
  const download = (selector, src, name) => {
    const link = $(selector, dialog);
    link.href = src;
    link.download = name;
  };
  download(".download-before", before.src, `${shortId(job.id)}-before`);
  download(".download-after", after.src, `${shortId(job.id)}-after`);
  Object.assign(view, { zoom: 1, x: 0, y: 0, pos: 50 });
  apply();
  dialog.showModal();
  $(".compare-view", dialog).focus();
}

export function wireCompare() {
  const dialog = $("#compare");
  const box = $(".compare-view", dialog);
  $("#compare-range").addEventListener("input", (e) => {
    view.pos = Number(e.target.value);
    apply();
  });
  $("#compare-zoom").addEventListener("input", (e) => setZoom(Number(e.target.value)));
  box.addEventListener("wheel", (e) => {
    e.preventDefault();
    setZoom(view.zoom * (e.deltaY < 0 ? 1.25 : 0.8));
  }, { passive: false });
  let drag = null;
  box.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX - view.x, y: e.clientY - view.y };
    box.setPointerCapture(e.pointerId);
  });
  box.addEventListener("pointermove", (e) => {
    if (!drag || view.zoom === 1) return;
    view.x = e.clientX - drag.x;
    view.y = e.clientY - drag.y;
    apply();
  });
  box.addEventListener("pointerup", () => {
    drag = null;
  });
  dialog.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement) return; // a range handles its own arrows
    const keys = {
      ArrowLeft: () => { view.pos = Math.max(0, view.pos - 5); apply(); },
      ArrowRight: () => { view.pos = Math.min(100, view.pos + 5); apply(); },
      "+": () => setZoom(view.zoom * 1.25),
      "=": () => setZoom(view.zoom * 1.25),
      "-": () => setZoom(view.zoom * 0.8),
      0: () => { Object.assign(view, { zoom: 1, x: 0, y: 0 }); apply(); },
    };
    const act = keys[e.key];
    if (act) {
      e.preventDefault();
      act();
    }
  });
}
