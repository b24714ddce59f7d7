// "Run again": the edited command, parameters and resources go to
// POST /api/v1/tasks/{id}/run-again (CSRF-checked); the new run's page opens.
// Parameters: the task's own overrides, with each changed value set at its path, parsed
// as the kind it had (a number stays a number); the server checks the kinds again.
import { call, say } from "./app.js";

const taskId = document.querySelector('meta[name="task-id"]').content;
const baseParams = JSON.parse(document.querySelector('meta[name="task-params"]').content || "{}");
const form = document.getElementById("run-again-form");
const status = document.getElementById("status");

function parse(input) {
  const text = input.value.trim();
  const label = input.getAttribute("aria-label");
  if (input.dataset.kind === "bool") return input.value === "true";
  if (input.dataset.kind === "text") return input.value;
  if (input.dataset.kind === "number") {
    const value = Number(text);
    if (text === "" || !Number.isFinite(value)) throw new Error(`${label}: a number`);
    return value;
  }
  try { return JSON.parse(text); } catch { throw new Error(`${label}: a JSON value`); }
}

function setAt(target, path, value) {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== "object" || node[key] === null || Array.isArray(node[key])) node[key] = {};
    node = node[key];
  }
  node[path[path.length - 1]] = value;
}

function optionalInt(data, name) {
  const text = String(data.get(name) || "").trim();
  return text === "" ? null : Number(text);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const data = new FormData(form);
  let body;
  try {
    const params = structuredClone(baseParams);
    for (const input of form.querySelectorAll("[data-path]")) {
      if (input.value === input.dataset.original) continue;
      setAt(params, JSON.parse(input.dataset.path), parse(input));
    }
    const command = String(data.get("command")).split("\n").map((line) => line.replace(/\r$/, ""))
      .filter((line, i, all) => line !== "" || (i > 0 && i < all.length - 1));
    body = {
      command, params,
      gpus: optionalInt(data, "gpus") ?? 0,
      labels: String(data.get("labels") || "").split(",").map((s) => s.trim()).filter(Boolean),
      priority: optionalInt(data, "priority") ?? 0,
      max_seconds: optionalInt(data, "max_seconds"),
      name: String(data.get("name") || "").trim() || null,
    };
  } catch (error) {
    say(status, error.message, true);
    return;
  }
  say(status, "Queueing…");
  call("POST", `/api/v1/tasks/${encodeURIComponent(taskId)}/run-again`, body)
    .then((made) => { location.assign(`/runs/${encodeURIComponent(made.run_id)}`); })
    .catch((error) => say(status, error.message, true));
});
