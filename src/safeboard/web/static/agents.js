// The Agents page: a join string minted through the API (shown once, copyable), and
// revocation (confirmed first). Every change is one CSRF-checked API call.
import { call, say } from "./app.js";

const status = document.getElementById("status");
const fail = (error) => say(status, error.message, true);

document.getElementById("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  const labels = String(data.get("labels") || "").split(",").map((s) => s.trim()).filter(Boolean);
  const body = { pool: String(data.get("pool")), labels, ttl_seconds: Number(data.get("ttl_seconds")) };
  call("POST", "/api/v1/agents/join-tokens", body).then((made) => {
    document.getElementById("join-string").textContent = made.join_string;
    document.getElementById("join-expires").textContent = made.expires_at.replace("T", " ").slice(0, 19);
    const box = document.getElementById("join");
    box.hidden = false;
    box.focus();
    say(status, `Join string created for pool ${made.pool}.`);
  }).catch(fail);
});

document.getElementById("copy-join").addEventListener("click", () => {
  const text = document.getElementById("join-string").textContent;
  navigator.clipboard.writeText(text)
    .then(() => say(status, "Copied the join string."))
    .catch(() => say(status, "Copy failed: select the string and copy it by hand.", true));
});

document.addEventListener("click", (event) => {
  const button = event.target.closest('button[data-action="revoke"]');
  if (!button) return;
  const name = button.dataset.name;
  if (!confirm(`Revoke agent ${name}? Its next call is refused and its tasks are requeued.`)) return;
  call("POST", `/api/v1/agents/${encodeURIComponent(button.dataset.agent)}/revoke`)
    .then(() => location.reload()).catch(fail);
});
