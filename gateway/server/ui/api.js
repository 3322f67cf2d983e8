// The gateway's API as the page uses it: the credential lives in sessionStorage only
// and travels in the Authorization header (never in a URL). An operator token reads
// as the tenant picked, through the X-Smsgw-Tenant header.

const STORE = "smsgw.session";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || "http_error";
  }
}

export function loadSession() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE)) || null;
  } catch {
    return null;
  }
}

export function saveSession(session) {
  sessionStorage.setItem(STORE, JSON.stringify(session));
}

export function dropSession() {
  sessionStorage.removeItem(STORE);
}

function headers(session, extra = {}) {
  const sent = { Authorization: `Bearer ${session.key}`, ...extra };
  if (session.operator && session.tenant) sent["X-Smsgw-Tenant"] = session.tenant;
  return sent;
}

export async function call(session, method, path, body) {
  const init = { method, headers: headers(session), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const document = text ? JSON.parse(text) : {};
  if (!response.ok) throw new ApiError(response.status, document);
  return document;
}

export function query(params) {
  const kept = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return kept.length ? `?${new URLSearchParams(kept)}` : "";
}

// Sign in with a tenant's API key, or an operator token (which then picks a tenant);
// the credential is checked with one read before it is kept.
export async function signIn(key, asOperator) {
  if (!asOperator) {
    const tenant = { key, operator: false };
    await call(tenant, "GET", "/v1/simulator/handsets?limit=1");
    return tenant;
  }
  const operator = { key, operator: true };
  const { tenants } = await call(operator, "GET", "/admin/v1/tenants");
  return { ...operator, tenants, tenant: tenants[0] };
}

// The tenant's event stream (SSE over fetch, since EventSource sends no headers).
// Calls onEvent(type, data) per event and onState("live" | "offline"); reconnects
// with the last id it saw until stop() is called.
export function openStream(session, onEvent, onState) {
  const control = new AbortController();
  let lastId = null;
  let stopped = false;

  async function readOnce() {
    const extra = lastId ? { "Last-Event-ID": lastId } : {};
    const response = await fetch("/v1/events", {
      headers: headers(session, extra),
      signal: control.signal,
      cache: "no-store",
    });
    if (!response.ok) throw new ApiError(response.status, await response.json());
    onState("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = parseBlock(block);
        if (event.id) lastId = event.id;
        if (event.type && event.data) onEvent(event.type, JSON.parse(event.data));
      }
    }
  }

  async function run() {
    while (!stopped) {
      try {
        await readOnce();
      } catch (error) {
        if (stopped) return;
        if (error instanceof ApiError && error.status === 401) {
          onState("offline");
          return;
        }
      }
      if (stopped) return;
      onState("offline");
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  run();
  return {
    stop() {
      stopped = true;
      control.abort();
    },
  };
}

function parseBlock(block) {
  const event = { id: null, type: null, data: "" };
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // a ping
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") event.id = value;
    else if (field === "event") event.type = value;
    else if (field === "data") event.data += value;
  }
  return event;
}
