// Shared by every signed-in page: JSON calls to the API with the session's CSRF token
// (S7), the sign-out button, and small DOM helpers that only ever set text, never HTML.
let csrf = document.querySelector('meta[name="csrf-token"]')?.content || null;

export class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

export async function call(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    if (response.status === 401 && method === "GET") toLogin();
    throw new ApiError(data && data.error ? data.error.message : response.statusText, response.status);
  }
  if (data && data.csrf_token) csrf = data.csrf_token;
  return data;
}

export function toLogin() {
  location.replace(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
}

// el("td", {class: "num"}, "text", childNode, ...): text children become text nodes.
export function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") || name === "style") throw new Error(`no ${name} attribute`);
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function say(node, text, isError) {
  node.textContent = text;
  node.classList.toggle("error", Boolean(isError));
}

// A server-sent event stream that says when it loses the server and when it is back
// (document.body.dataset.stream: open, reconnecting, closed). At a graceful stop the
// server ends the stream with "closing" and a retry: delay; the browser reconnects with
// Last-Event-ID and the server replays what it missed (within its window, else "reset").
// A stream made anew (below) has no Last-Event-ID, so the page also catches up with
// onBack() on every return, and on "reset". onFirstOpen() (optional) runs once, when the
// stream first opens: what happened between the page's making and then sent no event.
// The stream passes through the service worker that adds the session's binding (sw.js),
// and there Chromium closed an EventSource for good when its server went away, as it does
// when the stream is refused (tests/e2e/test_dashboard.py). So a closed stream is asked
// about once more: a refusal (signed out?) stays closed; no answer means the server is
// away, asked again every 3 s; an answer means a new stream.
const RECONNECT_MS = 3000;

export function liveStream(url, handlers, status, onBack, onFirstOpen) {
  const state = (value) => { document.body.dataset.stream = value; };
  let events = null;
  let started = 0;
  let lost = false;
  let left = false;
  let opened = false;

  function lose() {
    if (lost) return;
    lost = true;
    state("reconnecting");
    say(status, "Live updates lost the server: reconnecting…");
  }

  function open() {
    if (left) return;
    started = Date.now();
    const source = new EventSource(url);
    events = source;
    for (const [name, handler] of Object.entries(handlers)) source.addEventListener(name, handler);
    // The server ends a stream whose credential or access ended (signed out, key revoked,
    // grant removed): no retries then. "unavailable" (it could not check) reconnects.
    source.addEventListener("end", (event) => {
      const error = JSON.parse(event.data).error;
      if (error.code === "unavailable") return;
      left = true;
      source.close();
      state("closed");
      say(status, `Live updates stopped: ${error.message}`, true);
    });
    source.addEventListener("closing", lose);  // the server stops: back in a moment
    source.addEventListener("reset", () => onBack());
    source.addEventListener("open", () => {
      state("open");
      if (!opened && onFirstOpen) onFirstOpen();
      opened = true;
      if (!lost) return;
      lost = false;
      say(status, "Live updates are back.");
      onBack();
    });
    source.addEventListener("error", () => {
      lose();
      if (source.readyState !== EventSource.CLOSED) return;  // the browser retries itself
      source.close();
      ask();
    });
  }

  async function ask() {
    if (left) return;
    const asking = new AbortController();
    let answer;
    try {
      answer = await fetch(url, {
        headers: { "Accept": "text/event-stream" }, credentials: "same-origin",
        cache: "no-store", signal: asking.signal,
      });
    } catch {
      setTimeout(ask, RECONNECT_MS);  // the server is away
      return;
    }
    asking.abort();
    if (answer.ok) {
      setTimeout(open, Math.max(0, started + RECONNECT_MS - Date.now()));
      return;
    }
    state("closed");  // refused (signed out?): no retries
    say(status, "Live updates stopped: reload the page to resume them.", true);
  }

  window.addEventListener("pagehide", () => {
    left = true;
    if (events) events.close();
  });
  open();
  return { close: () => { left = true; events.close(); } };
}

export function when(moment) {
  return moment ? moment.slice(0, 19).replace("T", " ") : "";
}

// The session (and its CSRF token) on pages that the server did not render for a viewer.
export async function session() {
  return call("GET", "/api/v1/auth/session");
}

// Signing out ends the session on the server, then forgets its binding secret (which
// sw.js adds to every request; api.js stored it at sign-in).
const logout = document.getElementById("logout");
if (logout) {
  logout.addEventListener("click", () => {
    call("POST", "/api/v1/auth/logout")
      .then(() => caches.delete("safeboard-binding"))
      .then(() => location.replace("/login"))
      .catch((error) => alert(`Could not sign out: ${error.message}`));
  });
}

// A number of bytes as the CLI writes it (safeboard/sizes.py, the same rules): "1.5 MB".
export function humanSize(size) {
  const bytes = BigInt(size);
  if (bytes < 1000n) return `${bytes} bytes`;
  let divisor = 1000n;
  for (const unit of ["KB", "MB", "GB", "TB"]) {
    const tenths = (bytes * 10n + divisor / 2n) / divisor;
    if (tenths < 10000n || unit === "TB") return `${tenths / 10n}.${tenths % 10n} ${unit}`;
    divisor *= 1000n;
  }
  return `${bytes} bytes`;
}
