// The header's health badge: GET /v1/health (public; 503 carries the same body when critical)
// every HEALTH_MS, and soon after the live stream reports a failure or the connection changes.
// A click opens the reasons in a <dialog>.

import { $, debounce, element, plural } from "./util.js";
import { on, state } from "./state.js";

const HEALTH_MS = 15_000;
let timer = null;
let last = null;

export async function refreshHealth() {
  const session = state.session;
  let report;
  try {
    const response = await fetch("/v1/health", { cache: "no-store" });
    report = await response.json();
  } catch {
    report = { status: "unknown", reasons: ["the API did not answer its health check"], checks: {} };
  }
  if (session !== state.session) return;
  last = { ...report, at: Date.now() };
  render();
}

function render() {
  const badge = $("#health");
  const status = (last && last.status) || "unknown";
  const reasons = (last && last.reasons) || [];
  badge.dataset.status = status;
  $(".health-text", badge).textContent =
    status === "healthy" || status === "unknown" ? `health: ${status}` : `${status} (${plural(reasons.length, "reason")})`;
  badge.title = reasons.join("\n") || "all checks pass";
  const dialog = $("#health-dialog");
  $(".health-summary", dialog).textContent = `The service is ${status}.`;
  $(".health-reasons", dialog).replaceChildren(...reasons.map((r) => element("li", { text: r })));
  const checks = Object.entries((last && last.checks) || {});
  $(".health-checks", dialog).replaceChildren(
    ...checks.map(([name, check]) => element("li", { "data-status": check.status, text: `${name}: ${check.status}` })),
  );
  $(".health-checked", dialog).textContent = last ? `checked at ${new Date(last.at).toLocaleTimeString()}` : "";
}

export function wireHealth() {
  $("#health").addEventListener("click", () => {
    refreshHealth();
    $("#health-dialog").showModal();
  });
  on("connected", () => {
    clearInterval(timer);
    timer = setInterval(refreshHealth, HEALTH_MS);
    refreshHealth();
  });
  on("disconnected", () => {
    clearInterval(timer);
    timer = null;
  });
  on("conn", () => debounce("health", refreshHealth, 500));
  on("stream-event", ({ type }) => {
    if (type.endsWith(".failed") || type === "pull_client.inactive") debounce("health", refreshHealth, 1000);
  });
  render();
}
