// A project's Tasks tab: say when the tasks shown change (their runs' status moves with
// them on the project's event stream), with a Reload button; the table itself is the
// server's, as the URL's filter and page chose it.
import { el, liveStream } from "./app.js";

const project = document.querySelector('meta[name="project"]').content;
const live = document.getElementById("live");
const changed = new Set();

const firstPage = document.querySelector('meta[name="first-page"]').content === "true";

function note(event) {
  const data = JSON.parse(event.data);
  const status = data.data && data.data.status;
  if (!status) return;
  const shown = document.querySelector(`tr[data-run="${CSS.escape(data.run_id)}"]`);
  if (!shown && !(firstPage && status === "queued")) return;  // not on this page
  changed.add(data.run_id);
  offerReload(`${changed.size} task${changed.size === 1 ? "" : "s"} changed or came since this page loaded. `);
}

function offerReload(text) {
  const reload = el("button", { type: "button", class: "secondary" }, "Reload");
  reload.addEventListener("click", () => location.reload());
  live.replaceChildren(text, reload);
}

liveStream(`/api/v1/projects/${encodeURIComponent(project)}/events`, { run: note }, live,
  () => offerReload("Live updates were interrupted: tasks may have changed since. "));
