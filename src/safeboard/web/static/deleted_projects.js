// The deleted projects page (/trash): "Restore" and "Delete for good" for each project in
// the trash, asked on the page first, then one API call with the session's CSRF token.
import { call, say } from "./app.js";

const status = document.getElementById("deleted-status");
const group = document.getElementById("deleted-confirm");
const question = document.getElementById("deleted-question");
const yes = document.getElementById("deleted-yes");
const enc = encodeURIComponent;
let pending = null; // the row button whose question is open

function close() {
  group.hidden = true;
  pending = null;
}

for (const button of document.querySelectorAll("#deleted-projects button[data-project]")) {
  button.addEventListener("click", () => {
    const name = button.dataset.project;
    const purge = button.classList.contains("purge");
    question.textContent = purge
      ? `Delete project ${name} and all its runs for good? This cannot be undone.`
      : `Restore project ${name} with its runs?`;
    yes.textContent = purge ? "Delete for good" : "Restore";
    pending = button;
    group.hidden = false;
    say(status, "");
  });
}

document.getElementById("deleted-cancel")?.addEventListener("click", close);

yes?.addEventListener("click", async () => {
  if (!pending) return;
  const name = pending.dataset.project;
  const purge = pending.classList.contains("purge");
  yes.disabled = true;
  try {
    const done = await call("POST", `/api/v1/projects/${enc(name)}/${purge ? "purge" : "restore"}`);
    pending.closest("tr").remove();
    close();
    const runs = `${done.runs} run${done.runs === 1 ? "" : "s"}`;
    say(status, purge ? `Deleted ${name} for good (${runs}).`
      : `Restored ${name} with ${runs}.`);
  } catch (error) {
    say(status, error.message, true);
  } finally {
    yes.disabled = false;
  }
});
