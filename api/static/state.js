// Shared state and a tiny event bus: the modules talk through these, never through each other's
// internals. Events: "connected" (me), "disconnected", "refresh" (poll tick or stream opened),
// "stream-event" ({type, payload}), "job" (a job as merged), "conn" (connection state).

export const state = {
  key: "",
  me: null,
  session: 0, // bumped on every connect/disconnect: answers for an older key are dropped
  conn: "idle", // idle | connecting | live | polling
  lastEventId: 0,
  lastEventAt: 0,
  reconnects: 0,
  jobs: new Map(), // id -> job, as merged from REST and events
};

const bus = new EventTarget();

export function emit(name, detail) {
  bus.dispatchEvent(new CustomEvent(name, { detail }));
}

export function on(name, handler) {
  bus.addEventListener(name, (event) => handler(event.detail));
}
