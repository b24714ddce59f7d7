// The account page: password change, own sessions (end one), API keys (create, revoke).
import { call, el, say, when } from "./app.js";

const projectNames = new Map([...document.querySelectorAll('select[name="project"] option')]
  .filter((option) => option.value).map((option) => [Number(option.value), option.textContent]));

async function showKeys() {
  const keys = (await call("GET", "/api/v1/keys")).filter((k) => !k.revoked_at);
  const body = document.querySelector("#keys tbody");
  say(document.getElementById("keys-status"), keys.length ? "" : "No keys yet. Create one above to log runs from another machine.");
  body.replaceChildren(...keys.map((key) => {
    const revoke = el("button", { type: "button", class: "danger", "aria-label": `Revoke key ${key.name}` }, "Revoke");
    revoke.addEventListener("click", () => {
      if (!confirm(`Revoke the key “${key.name}”? Scripts using it stop at once.`)) return;
      call("DELETE", `/api/v1/keys/${encodeURIComponent(key.id)}`).then(showKeys)
        .catch((error) => say(document.getElementById("keys-status"), error.message, true));
    });
    return el("tr", { "data-key": key.id },
      el("th", { scope: "row" }, key.name), el("td", {}, el("code", {}, key.id)), el("td", {}, key.scope),
      el("td", {}, key.project_id === null ? "all" : projectNames.get(key.project_id) || `#${key.project_id}`),
      el("td", {}, when(key.created_at)), el("td", {}, key.expires_at ? when(key.expires_at) : "never"),
      el("td", {}, key.last_used_at ? `${when(key.last_used_at)} from ${key.last_used_address}` : "never"),
      el("td", {}, key.kind === "user" ? revoke : key.kind));
  }));
}

async function showSessions() {
  const sessions = await call("GET", "/api/v1/auth/sessions");
  const body = document.querySelector("#sessions tbody");
  body.replaceChildren(...sessions.map((session) => {
    let action = el("span", {}, "this browser");
    if (!session.current) {
      action = el("button", { type: "button", class: "danger" }, "Sign out");
      action.addEventListener("click", () => {
        call("DELETE", `/api/v1/auth/sessions/${encodeURIComponent(session.id)}`).then(showSessions)
          .catch((error) => say(document.getElementById("sessions-status"), error.message, true));
      });
    }
    return el("tr", { "data-session": session.id },
      el("td", {}, when(session.created_at)), el("td", {}, when(session.last_seen_at)),
      el("td", {}, when(session.expires_at)), el("td", {}, session.address),
      el("td", {}, session.user_agent), el("td", {}, action));
  }));
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const status = document.getElementById("key-status");
  const body = { name: form.get("name"), scope: form.get("scope") };
  if (form.get("project")) body.project_id = Number(form.get("project"));
  if (form.get("never")) body.never_expires = true;
  else body.expires_in_days = Number(form.get("days"));
  call("POST", "/api/v1/keys", body).then((created) => {
    const box = document.getElementById("secret");
    document.getElementById("new-key").textContent = created.token;
    document.getElementById("new-key-env").textContent = created.token;
    box.hidden = false;
    box.focus();
    event.target.reset();
    say(status, `Key “${created.name}” created.`);
    return showKeys();
  }).catch((error) => say(status, error.message, true));
});

document.getElementById("copy-key").addEventListener("click", () => {
  navigator.clipboard.writeText(document.getElementById("new-key").textContent)
    .then(() => say(document.getElementById("key-status"), "Copied."))
    .catch(() => say(document.getElementById("key-status"), "Select the key and copy it by hand.", true));
});

document.getElementById("password-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const status = document.getElementById("password-status");
  if (form.get("new") !== form.get("again")) { say(status, "The two new passwords differ.", true); return; }
  call("POST", "/api/v1/auth/password", { current_password: form.get("current"), new_password: form.get("new") })
    .then(() => { event.target.reset(); say(status, "Password changed. Your other sessions have ended."); return showSessions(); })
    .catch((error) => say(status, error.message, true));
});

Promise.all([showKeys(), showSessions()]).catch((error) => say(document.getElementById("keys-status"), error.message, true));
