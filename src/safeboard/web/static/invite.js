"use strict";
(() => {
  const { call, signIn, status, worker } = window.safeboard;
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  history.replaceState(null, "", location.pathname);  // the token leaves the address bar
  if (!token) status("This page needs the invitation link your admin sent you.", true);
  else {
    worker().catch((error) => status(error.message, true));
    // Whom the invitation is for (the token stays unused until the form is sent).
    call("POST", "/api/v1/auth/invite/lookup", { token }).then((invitee) => {
      const node = document.getElementById("invitee");
      const shown = invitee.display_name ? `${invitee.display_name} (${invitee.username})` : invitee.username;
      node.textContent = `Set a password for ${shown}.`;
      node.hidden = false;
    }).catch((error) => status(error.message, true));
  }

  document.getElementById("invite-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    if (form.get("password") !== form.get("again")) {
      status("The two passwords differ.", true);
      return;
    }
    signIn("/api/v1/auth/invite", { token, password: form.get("password") })
      .then(() => location.replace("/"))
      .catch((error) => status(error.message, true));
  });
})();
