// The compare view's images (issue 17): one image key across the compared runs, side by
// side, at one step chosen with a slider; a run with no image at that step shows its last
// one before it (or says it has none yet).
import { call, el, say } from "./app.js";

const q = encodeURIComponent;
const runs = [...document.querySelectorAll("#compare-runs li[data-run]")]
  .map((item) => ({ id: item.dataset.run, label: item.dataset.label }));
const section = document.getElementById("image-compare-section");
const picker = document.getElementById("image-key");
const slider = document.getElementById("image-compare-step");
const at = document.getElementById("image-compare-at");
const box = document.getElementById("image-compare");
const links = new Map();  // artifact id -> signed preview link
let series = [];  // per run: its steps of the chosen key
let steps = [];  // every step any run has, sorted
let asked = 0;

function shownAt(steps_of_run, step) {
  let found = null;
  for (const entry of steps_of_run) {
    if (entry.step > step) break;
    found = entry;
  }
  return found;
}

async function link(artifact) {
  if (!links.has(artifact)) {
    links.set(artifact, (await call("POST", `/api/v1/artifacts/${q(artifact)}/preview`)).url);
  }
  return links.get(artifact);
}

async function draw() {
  const step = steps[Number(slider.value)];
  at.textContent = step === undefined ? "" : String(step);
  const mine = ++asked;
  const cells = await Promise.all(runs.map(async (run, i) => {
    const entry = step === undefined ? null : shownAt(series[i], step);
    const caption = el("figcaption", {}, run.label, entry ? ` (step ${entry.step})` : " (no image yet)");
    if (!entry) return el("figure", { class: "chart media-panel", "data-run": run.id }, caption);
    const img = el("img", { src: await link(entry.artifact_id), alt: `${picker.value} of ${run.label} at step ${entry.step}`, "data-step": entry.step });
    return el("figure", { class: "chart media-panel", "data-run": run.id, "data-testid": "compared-image" }, caption, el("div", { class: "series-image" }, img));
  }));
  if (mine === asked) box.replaceChildren(...cells);
}

async function choose() {
  const key = picker.value;
  series = await Promise.all(runs.map((run) => call("GET", `/api/v1/runs/${q(run.id)}/images/series?image=${q(key)}`)
    .then((found) => found.steps)));
  steps = [...new Set(series.flat().map((entry) => entry.step))].sort((a, b) => a - b);
  slider.max = String(Math.max(steps.length - 1, 0));
  slider.value = slider.max;
  await draw();
}

async function start() {
  const listed = await Promise.all(runs.map((run) => call("GET", `/api/v1/runs/${q(run.id)}/images`)));
  const keys = [...new Set(listed.flatMap((found) => Object.keys(found.images)))].sort();
  if (!keys.length) return;
  picker.replaceChildren(...keys.map((key) => el("option", { value: key }, key)));
  section.hidden = false;
  await choose();
}

const fail = (error) => say(at, error.message, true);
picker.addEventListener("change", () => { choose().catch(fail); });
slider.addEventListener("input", () => { draw().catch(fail); });
start().then(() => { section.dataset.ready = "true"; }).catch(fail);
