// The runs table: tell about new or changed runs as they happen (server-sent events),
// and keep the "compare" button honest about what is selected.
import { call, el, liveStream } from "./app.js";

const project = document.querySelector('meta[name="project"]').content;
const live = document.getElementById("live");
let changed = new Set();

function note(event) {
  const data = JSON.parse(event.data);
  changed.add(data.run_id);
  const shown = document.querySelector(`tr[data-run="${CSS.escape(data.run_id)}"]`);
  if (event.type === "run" && shown && data.data && data.data.status) {
    const badge = shown.querySelector(".status");
    badge.textContent = data.data.status;
    badge.className = `status status-${data.data.status}`;
  }
  offerReload(`${changed.size} run${changed.size === 1 ? "" : "s"} changed since this page loaded. `);
}

function offerReload(text) {
  const reload = el("button", { type: "button", class: "secondary" }, "Reload");
  reload.addEventListener("click", () => location.reload());
  live.replaceChildren(text, reload);
}

// After a gap in the stream nobody knows what changed meanwhile: say so.
liveStream(`/api/v1/projects/${encodeURIComponent(project)}/events`, { run: note, metrics: note },
  live, () => offerReload("Live updates were interrupted: runs may have changed since. "));

const compare = document.getElementById("compare-selected");
if (compare) {
  const boxes = () => [...document.querySelectorAll('input[name="run"]:checked')];
  const update = () => {
    const n = boxes().length;
    compare.disabled = n < 2;
    compare.textContent = n < 2 ? "Compare selected runs" : `Compare ${n} runs`;
  };
  document.addEventListener("change", update);
  update();
}

// A new filter is checked with the API first (one run asked for, in the page's sort: the
// list answers from the same query as the table): a refused one keeps the table as it is
// and shows why under the box, instead of a page with no table.
const filterForm = document.querySelector('form[role="search"]');
const filterBox = document.getElementById("filter");
const problem = document.getElementById("filter-problem");
if (filterForm && filterBox && problem) {
  filterForm.addEventListener("submit", (event) => {
    const text = filterBox.value.trim();
    if (!text) return;
    event.preventDefault();
    const query = new URLSearchParams({ filter: text, limit: "1" });
    const form = new FormData(filterForm);
    for (const name of ["sort", "order"]) {
      if (form.get(name)) query.set(name, form.get(name));
    }
    call("GET", `/api/v1/projects/${encodeURIComponent(project)}/runs?${query}`)
      .then(() => filterForm.submit())
      .catch((error) => {
        if (error.status === 401) return;  // call() is taking the page to the sign-in form
        if (error.status !== 400 && error.status !== 422) { filterForm.submit(); return; }
        problem.textContent = error.message;
        problem.hidden = false;
        filterBox.setAttribute("aria-invalid", "true");
        filterBox.setAttribute("aria-errormessage", "filter-problem");
        filterBox.focus();
      });
  });
  filterBox.addEventListener("input", () => {
    problem.hidden = true;
    filterBox.removeAttribute("aria-invalid");
  });
}
