"use strict";
(() => {
  const { resume, signIn, status, worker } = window.safeboard;
  const params = new URLSearchParams(location.search);
  const next = params.get("next");

  function go(session) { location.replace(session.redirect || "/"); }

  // A startup link carries its token in the fragment, which never leaves the browser.
  // Take it, then remove it from the address bar and the history before anything else.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (token) {
    history.replaceState(null, "", location.pathname + location.search);
    status("Signing in…");
    worker().then(
      () => signIn("/api/v1/auth/startup", { token, next })
        .then(go)
        .catch((error) => status(`This sign-in link did not work: ${error.message}`, true)),
      (error) => status(error.message, true));
  } else {
    worker().then(() => resume(next).catch(() => {}), (error) => status(error.message, true));
  }

  document.getElementById("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    status("Signing in…");
    signIn("/api/v1/auth/login", {
      username: form.get("username"), password: form.get("password"), next,
    }).then(go).catch((error) => status(error.message, true));
  });
})();
