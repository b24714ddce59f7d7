// Administration pages: every change is one API call (CSRF-checked), then the page reloads
// so that what it shows is what the server holds.
import { call, say } from "./app.js";

const status = document.getElementById("status");
const user = (node) => encodeURIComponent(node.dataset.user);
const fail = (error) => say(status, error.message, true);

function showInvite(invite) {
  document.getElementById("invite-user").textContent = invite.username;
  document.getElementById("invite-hours").textContent = String(invite.expires_in_hours);
  document.getElementById("invite-link").textContent = invite.link;
  const box = document.getElementById("invite");
  box.hidden = false;
  box.focus();
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const action = button.dataset.action;
  if (action === "invite") {
    call("POST", `/api/v1/users/${user(button)}/invite`).then(showInvite).catch(fail);
  } else if (action === "active") {
    call("PATCH", `/api/v1/users/${user(button)}`, { active: button.dataset.value === "true" })
      .then(() => location.reload()).catch(fail);
  } else if (action === "end-sessions") {
    if (!confirm(`Sign ${button.dataset.user} out everywhere?`)) return;
    call("DELETE", `/api/v1/users/${user(button)}/sessions`).then(() => location.reload()).catch(fail);
  } else if (action === "delete-user") {
    // Issue 18: sessions and keys end at once; their runs stay; the audit log keeps the name.
    if (!confirm(`Delete the account ${button.dataset.user}? Their runs stay in their projects.`)) return;
    call("DELETE", `/api/v1/users/${user(button)}`).then(() => location.reload()).catch(fail);
  } else if (action === "ungrant") {
    call("DELETE", `/api/v1/projects/${encodeURIComponent(button.dataset.project)}/grants/${user(button)}`)
      .then(() => location.reload()).catch(fail);
  }
});

document.addEventListener("change", (event) => {
  const select = event.target.closest('select[data-action="role"]');
  if (!select) return;
  call("PATCH", `/api/v1/users/${user(select)}`, { role: select.value })
    .then(() => say(status, `${select.dataset.user} is now ${select.value}.`)).catch(fail);
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.id === "add-user") {
    event.preventDefault();
    const data = new FormData(form);
    const username = data.get("username");
    call("POST", "/api/v1/users", { username, role: data.get("role"), display_name: data.get("display_name") || "" })
      .then(() => call("POST", `/api/v1/users/${encodeURIComponent(username)}/invite`))
      .then((invite) => { showInvite(invite); form.reset(); say(status, `Added ${username}. Reload to see them listed.`); })
      .catch(fail);
  } else if (form.classList.contains("grant-form")) {
    event.preventDefault();
    const data = new FormData(form);
    const project = encodeURIComponent(form.dataset.project);
    call("PUT", `/api/v1/projects/${project}/grants/${encodeURIComponent(data.get("user"))}`, { role: data.get("role") })
      .then(() => location.reload()).catch(fail);
  }
});
