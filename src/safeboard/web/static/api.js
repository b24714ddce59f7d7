"use strict";
// Shared by the sign-in pages: JSON calls to the API with the session's CSRF token, and
// the service worker that sends the session's binding secret (sw.js, auth/binding.py).
window.safeboard = (() => {
  let csrf = null;
  const STORE = "safeboard-binding";  // as in sw.js
  const KEY = "/.well-known/safeboard-binding";

  async function call(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
    const response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const error = new Error(data && data.error ? data.error.message : response.statusText);
      error.status = response.status;
      throw error;
    }
    if (data && data.csrf_token) csrf = data.csrf_token;
    return data;
  }

  function status(text, isError) {
    const node = document.getElementById("status");
    node.textContent = text;
    node.className = isError ? "error" : "";
  }

  // The worker must be running before anyone signs in: without it the session could not
  // be used (and a startup link or invitation would be spent for nothing).
  const NO_WORKER = "This browser cannot sign in to safeboard: it needs service workers " +
    "and Cache Storage (they keep the session's key to this server, port included, away " +
    "from other services on this host). Allow them for this site (private windows and " +
    "some settings turn them off), or open safeboard over https:// or on 127.0.0.1.";
  const START_MS = 10000;

  // Resolves once the registration has an active worker (a newer one may be installing:
  // the active one sends the binding as well).
  function activated(registration) {
    const worker = registration && (registration.active || registration.waiting || registration.installing);
    if (!worker) return Promise.reject(new Error("the service worker was not registered"));
    if (worker.state === "activated") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the service worker did not start")), START_MS);
      worker.addEventListener("statechange", () => {
        if (worker.state === "activated") resolve();
        else if (worker.state === "redundant") reject(new Error("the service worker failed"));
        else return;
        clearTimeout(timer);
      });
    });
  }

  let registered = null;
  function worker() {
    if (!registered) {
      registered = (async () => {
        if (!window.isSecureContext || !navigator.serviceWorker || !window.caches) {
          throw new Error(NO_WORKER);
        }
        try {
          await caches.open(STORE);
          await activated(await navigator.serviceWorker.register("/sw.js", { scope: "/" }));
        } catch (error) {
          throw new Error(`${NO_WORKER} (${error.message})`);
        }
      })();
    }
    return registered;
  }

  // Sign in through ``path`` once the worker runs; keep the session's binding for it.
  async function signIn(path, body) {
    await worker();
    const session = await call("POST", path, body);
    const store = await caches.open(STORE);
    await store.put(KEY, new Response(session.binding));
    return session;
  }

  // Back to where the person was going when they are signed in after all: a hard reload
  // (Shift+Reload) loads a page past the service worker, without the binding, and so lands
  // here. Asked with the stored binding; at most once in 10 s, so it can never loop.
  async function resume(next) {
    const found = await (await caches.open(STORE)).match(KEY);
    const last = Number(sessionStorage.getItem("safeboard-resumed") || 0);
    if (!found || Date.now() - last < 10000) return;
    const answer = await fetch("/api/v1/auth/session", {
      headers: { "Accept": "application/json", "X-Safeboard-Binding": await found.text() },
      credentials: "same-origin",
    });
    if (!answer.ok) return;
    sessionStorage.setItem("safeboard-resumed", String(Date.now()));
    location.replace(sameOrigin(next));
  }

  function sameOrigin(path) {  // a path of this origin, or "/"
    try {
      const url = new URL(path || "/", location.origin);
      if (url.origin === location.origin) return url.pathname + url.search + url.hash;
    } catch { /* not a URL */ }
    return "/";
  }

  return { call, status, worker, signIn, resume };
})();
