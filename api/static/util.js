// Small helpers every panel uses.

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

export const parseTime = (s) => (s ? Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(s) ? s : `${s}Z`) : 0);
export const shortId = (id) => String(id).slice(0, 8);
export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

export function formatBytes(n) {
  if (!Number.isFinite(n)) return "?";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// "42 s ago", "5 min ago", "3 h ago", else a date.
export function ago(ms, now = Date.now()) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ms).toLocaleString();
}

export function toast(text, kind = "error") {
  const item = document.createElement("p");
  item.textContent = text;
  item.className = `toast-${kind}`;
  $("#toasts").append(item);
  setTimeout(() => item.remove(), 8000);
}

export function element(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "for") el.setAttribute(k, v);
    else el[k] = v;
  }
  el.append(...children.filter((c) => c !== null && c !== undefined));
  return el;
}

export function fillSelect(select, values, { keepFirst = false } = {}) {
  const first = keepFirst ? [select.options[0]] : [];
  const previous = select.value;
  select.replaceChildren(
    ...first,
    ...values.map((value) => {
      const [v, label] = Array.isArray(value) ? value : [value, value];
      return element("option", { value: v, text: label });
    }),
  );
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}

const SPINNING = new Set(["queued", "submitted", "processing", "storing", "QUEUED", "RUNNING"]);

export function setChip(chip, status) {
  chip.className = `chip status s-${status}`;
  chip.dataset.status = status;
  chip.replaceChildren();
  if (SPINNING.has(status)) chip.append(element("span", { class: "spinner", "aria-hidden": "true" }));
  chip.append(document.createTextNode(status));
}

// A status line under a form or a button: the last attempt's, replaced (never appended) on each.
export function setResult(el, text, { error = false, ...data } = {}) {
  el.textContent = text;
  el.classList.toggle("error", error);
  for (const key of Object.keys(el.dataset)) delete el.dataset[key];
  for (const [k, v] of Object.entries(data)) if (v) el.dataset[k] = v;
}

// Move only the nodes that are out of place: a moved node keeps its loaded images.
export function orderList(list, compare) {
  const sorted = [...list.children].sort(compare);
  sorted.forEach((node, i) => {
    const here = list.children[i];
    if (here !== node) list.insertBefore(node, here);
  });
}

export function newestFirst(a, b) {
  return parseTime(b && b.created_at) - parseTime(a && a.created_at) || String(b && b.id).localeCompare(String(a && a.id));
}

const timers = new Map();

// Run `fn` once, DELAY ms after the last call with this key.
export function debounce(key, fn, delay = 150) {
  clearTimeout(timers.get(key));
  timers.set(
    key,
    setTimeout(() => {
      timers.delete(key);
      Promise.resolve()
        .then(fn)
        .catch((error) => {
          if (error.status !== -1 && error.status !== 401) console.warn(key, error.message);
        });
    }, delay),
  );
}

export function cancelDebounced() {
  for (const timer of timers.values()) clearTimeout(timer);
  timers.clear();
}

// A <dialog> asking yes or no; resolves true for yes.
export function confirmDialog(text, yes = "Delete") {
  const dialog = $("#confirm");
  $("#confirm-text", dialog).textContent = text;
  $('button[value="ok"]', dialog).textContent = yes;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}
