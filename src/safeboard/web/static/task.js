// A task's page: its log followed live (a long-poll of GET /api/v1/tasks/{id}/logs,
// docs/agents.md "Logs"), paused and searched; its state kept current; cancel and retry
// (with the session's CSRF token, through call()).
import { call, el, say, when } from "./app.js";

const taskId = document.querySelector('meta[name="task-id"]').content;
const FINAL = new Set(["succeeded", "failed", "cancelled", "lost"]);
const WAIT_S = 20;
const RETRY_MS = 3000;
const log = document.getElementById("log");
const logStatus = document.getElementById("log-status");
const followButton = document.getElementById("log-follow");
const search = document.getElementById("log-search");
const attemptSelect = document.getElementById("log-attempt");
const actionStatus = document.getElementById("action-status");

let state = document.querySelector('meta[name="task-state"]').content;
let following = true;  // "Pause" stops asking for lines (and scrolling); "Follow" resumes
let chosen = null;  // an attempt picked in the select; null: the latest
let shownAttempt = null;  // the attempt whose lines the log shows last
let reading = 0;  // the attempt read when following the latest (0: the server's latest)
let after = 0;
let generation = 0;  // a new choice of attempt abandons the reads of the old one
let wake = null;

function showState(next) {
  if (next === state) return;
  state = next;
  const badge = document.getElementById("task-state");
  badge.textContent = next;
  badge.className = `status task-${next}`;
  const final = FINAL.has(next);
  const cancel = document.getElementById("cancel-task");
  const retry = document.getElementById("retry-task");
  if (cancel) cancel.hidden = final;
  if (retry) retry.hidden = !final;
  if (final) refreshAttempts().catch((error) => say(logStatus, error.message, true));
}

// The attempts table drawn again from the API (a new attempt, an exit code, a state):
// agents keep the names the server rendered; a new one shows its id until a reload.
const HEADERS = ["Attempt", "Agent", "GPUs", "State", "Started", "Ended", "Exit", "Reason"];

function attemptRow(attempt, names) {
  const exit = attempt.signal !== null ? `signal ${attempt.signal}`
    : attempt.exit_code === null ? "" : String(attempt.exit_code);
  return el("tr", { "data-attempt": attempt.attempt },
    el("th", { scope: "row" }, String(attempt.attempt)),
    el("td", { "data-agent": attempt.agent_id }, names.get(attempt.agent_id) || attempt.agent_id),
    el("td", {}, attempt.gpu_uuids.join(", ") || "—"),
    el("td", {}, el("span", { class: `status task-${attempt.state}` }, attempt.state)),
    el("td", {}, when(attempt.started_at)),
    el("td", {}, when(attempt.ended_at)),
    el("td", { class: "num", "data-testid": "exit-code" }, exit),
    el("td", {}, attempt.reason));
}

async function refreshAttempts() {
  const task = await call("GET", `/api/v1/tasks/${taskId}`);
  showState(task.state);
  if (!task.attempts.length) return;
  const names = new Map([...document.querySelectorAll("#attempts td[data-agent]")]
    .map((cell) => [cell.dataset.agent, cell.textContent]));
  const head = el("tr", {}, HEADERS.map((h) => el("th", { scope: "col" }, h)));
  const table = el("table", { class: "runs" }, el("thead", {}, head),
    el("tbody", {}, task.attempts.map((attempt) => attemptRow(attempt, names))));
  const section = document.getElementById("attempts");
  section.replaceChildren(el("h2", {}, "Attempts"), el("div", { class: "scroll" }, table));
}

function matches(line) {
  const text = search.value.trim().toLowerCase();
  return !text || line.dataset.text.includes(text);
}

function countShown() {
  const lines = log.children.length;
  const text = search.value.trim();
  if (!text) return;
  const hits = [...log.children].filter((line) => !line.hidden).length;
  say(logStatus, `${hits} of ${lines} lines hold "${text}"`);
}

function append(lines, attempt) {
  if (shownAttempt !== null && attempt !== shownAttempt && lines.length) {
    log.append(el("li", { class: "log-mark", "data-text": "" }, `attempt ${attempt}`));
  }
  if (attempt > 0 && attempt !== shownAttempt) {  // an agent took it: show the attempt
    refreshAttempts().catch((error) => say(logStatus, error.message, true));
  }
  shownAttempt = attempt;
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  for (const line of lines) {
    const item = el("li", { value: line.n, class: `log-${line.stream}`, "data-text": line.text.toLowerCase() },
      line.text);
    item.hidden = !matches(item);
    log.append(item);
  }
  if (following && atBottom) log.scrollTop = log.scrollHeight;
  if (lines.length) countShown();
}

function describe(page) {
  if (search.value.trim()) return;
  const lines = log.querySelectorAll("li:not(.log-mark)").length;
  const where = `${lines} line${lines === 1 ? "" : "s"} of attempt ${page.attempt}`;
  if (page.attempt === 0) say(logStatus, "Waiting for an agent to take the task…");
  else if (page.attempt_ended && FINAL.has(page.state)) say(logStatus, `${where}; the task is ${page.state}.`);
  else if (page.attempt_ended) say(logStatus, `${where}; the attempt has ended.`);
  else say(logStatus, following ? `${where}; following…` : `${where}; paused.`);
}

function paused() {
  return new Promise((resolve) => { wake = resolve; });
}

async function follow() {
  const mine = generation;
  while (mine === generation) {
    if (!following) { await paused(); continue; }
    const query = new URLSearchParams({ after: String(after), limit: "100" });
    if (chosen !== null) query.set("attempt", String(chosen));
    else if (reading > 0) query.set("attempt", String(reading));
    query.set("wait", String(WAIT_S));
    let page;
    try {
      page = await call("GET", `/api/v1/tasks/${taskId}/logs?${query}`);
    } catch (error) {
      if (error.status === 401) return;  // call() is taking the page to the sign-in form
      say(logStatus, `The log could not be read: ${error.message}. Trying again…`, true);
      await new Promise((resolve) => { setTimeout(resolve, RETRY_MS); });
      continue;
    }
    while (!following && mine === generation) await paused();  // shown on "Follow"
    if (mine !== generation) return;
    append(page.lines, page.attempt);
    if (page.attempt > 0) reading = page.attempt;
    after = page.next;
    showState(page.state);
    describe(page);
    if (page.lines.length) continue;  // more may wait: read on at once
    if (chosen === null && page.current_attempt !== page.attempt) {
      after = 0;  // a new attempt began (a retry of a lost one): follow it from its start
      reading = page.current_attempt;
      continue;
    }
    if (page.attempt_ended && (chosen !== null || FINAL.has(page.state))) return;  // all read
  }
}

function restart() {
  generation += 1;
  log.replaceChildren();
  after = 0;
  shownAttempt = chosen;
  reading = 0;
  if (wake) wake();
  follow();
}

followButton.addEventListener("click", () => {
  following = !following;
  followButton.textContent = following ? "Pause" : "Follow";
  followButton.setAttribute("aria-pressed", following ? "true" : "false");
  if (following) {
    log.scrollTop = log.scrollHeight;
    if (wake) wake();
  } else {
    say(logStatus, "Paused: new lines wait on the server until you follow again.");
  }
});

search.addEventListener("input", () => {
  for (const line of log.children) line.hidden = !matches(line);
  if (search.value.trim()) countShown();
  else say(logStatus, `${log.children.length} lines`);
});

attemptSelect?.addEventListener("change", () => {
  chosen = attemptSelect.value ? Number(attemptSelect.value) : null;
  restart();
});

document.getElementById("cancel-task")?.addEventListener("click", async (event) => {
  event.target.disabled = true;
  try {
    const task = await call("POST", `/api/v1/tasks/${taskId}/cancel`);
    say(actionStatus, task.state === "cancelling"
      ? "Cancelling: the agent stops the process at its next heartbeat." : `The task is ${task.state}.`);
    showState(task.state);
    if (!following) followButton.click();  // see it end
  } catch (error) {
    say(actionStatus, `Could not cancel: ${error.message}`, true);
  } finally {
    event.target.disabled = false;
  }
});

document.getElementById("retry-task")?.addEventListener("click", async (event) => {
  event.target.disabled = true;
  try {
    const task = await call("POST", `/api/v1/tasks/${taskId}/retry`);
    location.assign(`/tasks/${task.id}`);
  } catch (error) {
    say(actionStatus, `Could not retry: ${error.message}`, true);
    event.target.disabled = false;
  }
});

follow();
