// The REST client: the API key only ever travels in the Authorization header.

import { emit, state } from "./state.js";

export class ApiError extends Error {
  constructor(status, message, fields = []) {
    super(message);
    this.status = status;
    this.fields = fields; // [{field, message}] from a 422's details
  }
}

function fieldsOf(body) {
  const details = (body && body.error && body.error.details) || {};
  if (!Array.isArray(details.fields)) return [];
  return details.fields.map((d) => ({
    field: (d.loc || []).filter((p) => p !== "body").join("."),
    message: String(d.msg || "").replace(/^Value error, /, ""),
  }));
}

export function describeError(body, response) {
  // Every API error is {"error": {"code", "message", "details"}}.
  const error = body && body.error;
  if (!error || typeof error !== "object") return `${response.status} ${response.statusText}`;
  const fields = fieldsOf(body);
  if (fields.length) return fields.map((f) => (f.field ? `${f.field}: ${f.message}` : f.message)).join("; ");
  const details = error.details || {};
  const message = error.message || error.code || `${response.status} ${response.statusText}`;
  return details.running_run_id ? `${message} (running run: ${details.running_run_id})` : message;
}

export async function api(path, { method = "GET", body } = {}) {
  const session = state.session;
  const headers = { Authorization: `Bearer ${state.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "the API is unreachable");
  }
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : null;
  if (session !== state.session) throw new ApiError(-1, "superseded");
  if (!response.ok) {
    const error = new ApiError(response.status, describeError(data, response), fieldsOf(data));
    if (response.status === 401 && state.me) emit("key-rejected", error.message);
    throw error;
  }
  return data;
}

// True for errors worth showing: not "another key took over", not a rejected key (said elsewhere).
export const worthShowing = (error) => error.status !== -1 && !(error.status === 401 && !state.me);

export const enc = encodeURIComponent;
