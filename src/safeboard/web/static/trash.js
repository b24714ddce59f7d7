// Deleting from the dashboard (docs/operations.md, "Deletion and retention"): the run
// page's "Delete run", the runs table's "Delete selected", and a project's trash page
// (restore, delete for good, rename, retention, delete the project). Every change asks on
// the page first and goes through call() with the session's CSRF token.
import { call, say } from "./app.js";

const project = document.querySelector('meta[name="project"]')?.content;
const runId = document.querySelector('meta[name="run-id"]')?.content;
const enc = encodeURIComponent;

// A button that shows its confirmation group; "Keep it" hides the group again.
function confirming(prefix, before) {
  const open = document.getElementById(prefix);
  const group = document.getElementById(`${prefix}-confirm`);
  if (!open || !group) return;
  open.addEventListener("click", () => {
    if (before && !before()) return;
    group.hidden = false;
    open.hidden = true;
  });
  document.getElementById(`${prefix}-cancel`).addEventListener("click", () => {
    group.hidden = true;
    open.hidden = false;
  });
}

// A button whose click runs `action`, disabled meanwhile, saying an error in `status`.
function acting(button, status, action) {
  button?.addEventListener("click", async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      say(status, error.message, true);
      button.disabled = false;
    }
  });
}

// The run page.
if (runId) {
  const status = document.getElementById("delete-run-status");
  confirming("delete-run");
  const projectName = document.querySelector('nav.crumbs a[href^="/projects/"]')?.textContent;
  for (const [id, purge] of [["delete-run-trash", false], ["delete-run-purge", true]]) {
    acting(document.getElementById(id), status, async () => {
      await call("DELETE", `/api/v1/runs/${enc(runId)}?purge=${purge}`);
      location.assign(`/projects/${enc(projectName)}${purge ? "" : "/trash"}`);
    });
  }
}

// The runs table: the rows ticked (for compare) go to the trash.
const selected = () => [...document.querySelectorAll('input[form="compare-form"]:checked')]
  .map((box) => box.value);
if (project && document.getElementById("delete-selected")) {
  const status = document.getElementById("delete-selected-status");
  const question = document.querySelector("#delete-selected-confirm p");
  confirming("delete-selected", () => {
    const n = selected().length;
    if (n === 0) { say(status, "Tick the runs to delete first.", true); return false; }
    question.textContent = `Move ${n} run${n === 1 ? "" : "s"} to the trash?`;
    say(status, "");
    return true;
  });
  acting(document.getElementById("delete-selected-trash"), status, async () => {
    const done = await call("POST", `/api/v1/projects/${enc(project)}/runs/delete`,
      { ids: selected() });
    say(status, `${done.count} run${done.count === 1 ? "" : "s"} moved to the trash.`);
    location.reload();
  });
}

// The trash page: "Restore" at once; "Delete for good" asks first (#trash-purge-confirm).
const trashStatus = document.getElementById("trash-status");
const purgeGroup = document.getElementById("trash-purge-confirm");
let purging = null; // the row's button whose question is open
for (const button of document.querySelectorAll("#trash-table button[data-run]")) {
  const id = button.dataset.run;
  if (button.classList.contains("purge")) {
    button.addEventListener("click", () => {
      const name = button.closest("tr").children[1].textContent;
      purgeGroup.querySelector("p").textContent =
        `Delete run ${name} for good, with its metrics and artifacts? This cannot be undone.`;
      purging = button;
      purgeGroup.hidden = false;
    });
    continue;
  }
  acting(button, trashStatus, async () => {
    await call("POST", `/api/v1/runs/${enc(id)}/restore`);
    button.closest("tr").remove();
    say(trashStatus, "Restored: it is back in the runs table.");
  });
}
document.getElementById("trash-purge-cancel")?.addEventListener("click", () => {
  purgeGroup.hidden = true;
  purging = null;
});
const purgeYes = document.getElementById("trash-purge-yes");
purgeYes?.addEventListener("click", async () => {
  if (!purging) return;
  purgeYes.disabled = true;
  try {
    await call("POST", `/api/v1/runs/${enc(purging.dataset.run)}/purge`);
    purging.closest("tr").remove();
    purgeGroup.hidden = true;
    purging = null;
    say(trashStatus, "Deleted for good.");
  } catch (error) {
    say(trashStatus, error.message, true);
  } finally {
    purgeYes.disabled = false;
  }
});

const settingsStatus = document.getElementById("settings-status");
const renameForm = document.getElementById("rename-form");
acting(renameForm?.querySelector("button"), settingsStatus, async () => {
  const name = document.getElementById("rename-input").value.trim();
  const renamed = await call("PATCH", `/api/v1/projects/${enc(project)}`, { name });
  location.assign(`/projects/${enc(renamed.name)}/trash`);
});

const retentionForm = document.getElementById("retention-form");
const days = (id) => {
  const text = document.getElementById(id).value.trim();
  return text === "" ? null : Number(text);
};
acting(retentionForm?.querySelector("button"), settingsStatus, async () => {
  const kept = await call("PUT", `/api/v1/projects/${enc(project)}/retention`,
    { trash_days: days("trash-days"), max_run_age_days: days("max-age-days") });
  say(settingsStatus, `Saved: the trash is purged after ${kept.effective_trash_days} days.`);
  retentionForm.querySelector("button").disabled = false;
});

confirming("delete-project");
acting(document.getElementById("delete-project-yes"), settingsStatus, async () => {
  await call("DELETE", `/api/v1/projects/${enc(project)}`);
  location.assign("/trash"); // the deleted projects, where it can be restored
});
