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
  let registered = null;
  function worker() {
    if (!registered) {
      registered = (async () => {
        if (!window.isSecureContext || !("serviceWorker" in navigator) || !window.caches) {
          throw new Error(NO_WORKER);
        }
        try {
          await navigator.serviceWorker.register("/sw.js", { scope: "/" });
          await caches.open(STORE);
        } catch (error) {
          throw new Error(`${NO_WORKER} (${error.message})`);
        }
        return navigator.serviceWorker.ready;
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

  return { call, status, worker, signIn };
})();
