"use strict";
// safeboard's service worker (scope "/", served at /sw.js). It adds the session's binding
// secret to every request that safeboard's pages make to this origin: navigations, API
// calls, event streams, downloads. Cookies ignore ports, so every web service on this
// host receives the session cookie; the binding lives in Cache Storage, which belongs to
// this origin alone (scheme, host and port), and without it the cookie signs nobody in
// (auth/binding.py). The sign-in pages store it (api.js); signing out deletes it.
const STORE = "safeboard-binding";
const KEY = "/.well-known/safeboard-binding";  // a cache key only; never requested
const HEADER = "X-Safeboard-Binding";
const HTML = "text/html,application/xhtml+xml,*/*;q=0.8";

self.addEventListener("install", (event) => event.waitUntil(self.skipWaiting()));
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

async function binding() {
  const found = await (await caches.open(STORE)).match(KEY);
  return found ? found.text() : null;
}

async function forward(request) {
  const secret = await binding();
  if (!secret) return fetch(request);
  const headers = new Headers(request.headers);
  headers.set(HEADER, secret);
  // Same origin only, always: a redirect that left it would fail rather than carry the
  // secret along.
  if (request.mode === "cors" || request.mode === "same-origin") {
    return fetch(new Request(request, { headers, mode: "same-origin" }));
  }
  // Navigations and no-cors requests (downloads) cannot be copied with a header that is
  // not "simple": ask again by URL. A navigation gets a redirect back unfollowed (the
  // browser follows it, through this worker again).
  const navigate = request.mode === "navigate";
  if (navigate && !(headers.get("Accept") || "").includes("text/html")) headers.set("Accept", HTML);
  return fetch(request.url, {
    method: request.method,
    headers,
    mode: "same-origin",
    credentials: "same-origin",
    redirect: navigate ? "manual" : request.redirect,
    cache: "no-store",
  });
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  // Other origins never see the secret. Static files need none. Pages navigate with GET
  // only (their changes are API calls from their scripts): any other navigation, or a
  // no-cors write, goes out as the browser made it, without the binding: not signed in.
  if (url.origin !== self.location.origin || /^\/static\//.test(url.pathname)) return;
  // TensorBoard under /tb/ (tensorboard.same_origin) is entered by its own cookie.
  if (/^\/tb(\/|$)/.test(url.pathname)) return;
  const simple = request.mode === "navigate" || request.mode === "no-cors";
  if (simple && request.method !== "GET" && request.method !== "HEAD") return;
  event.respondWith(forward(request));
});
