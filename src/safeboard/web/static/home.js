// The home page: the projects you can see, and a form to start a new one.
import { call, el, say, session, when } from "./app.js";

const status = document.getElementById("status");

function projectRow(project) {
  return el("tr", {},
    el("th", { scope: "row" }, el("a", { href: `/projects/${encodeURIComponent(project.name)}` }, project.name)),
    el("td", {}, project.description || ""),
    el("td", { class: "num" }, String(project.runs)),
    el("td", {}, project.last_run_at ? when(project.last_run_at) : "none yet"),
    el("td", {}, project.role || "admin"),
    el("td", {}, when(project.created_at)));
}

async function showProjects() {
  const projects = await call("GET", "/api/v1/projects");
  const body = document.querySelector("#projects tbody");
  body.replaceChildren(...projects.map(projectRow));
  document.getElementById("projects").hidden = projects.length === 0;
  document.getElementById("no-projects").hidden = projects.length !== 0;
  say(status, projects.length ? "" : "Waiting for your first run…");
  // Until the first project exists, look again now and then: it appears as it is made.
  if (!projects.length) setTimeout(() => showProjects().catch(() => {}), 3000);
}

session().then(async (me) => {
  document.getElementById("who").textContent = `Signed in as ${me.user.username} (${me.user.role})`;
  if (me.user.role === "admin") {
    for (const item of document.querySelectorAll(".admin-only")) item.hidden = false;
  }
  await showProjects();
}).catch((error) => { if (error.status !== 401) say(status, error.message, true); });

document.getElementById("new-project").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { name: form.get("name"), description: form.get("description") || "" };
  call("POST", "/api/v1/projects", body)
    .then((project) => location.assign(`/projects/${encodeURIComponent(project.name)}`))
    .catch((error) => say(document.getElementById("new-project-status"), error.message, true));
});
