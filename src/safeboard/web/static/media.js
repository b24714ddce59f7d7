// A run's histograms (TensorBoard's distribution view: bands of percentiles over steps,
// and the histogram at a step chosen with a slider), its image series (a panel per key
// with a step slider) and its texts per step (issue 17), followed live while the run
// logs. Everything the run logged is set as text (app.js el), never as HTML.
import { call, el, say } from "./app.js";

const runId = document.querySelector('meta[name="run-id"]').content;
const base = `/api/v1/runs/${encodeURIComponent(runId)}`;
const q = encodeURIComponent;
const MAX_PANELS = 50;  // keys drawn at first; the rest behind "Show all"

export function fmt(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e5 || a < 1e-3 ? v.toExponential(2) : String(Number(v.toPrecision(4)));
}

function canvas(label, testid) {
  return el("canvas", { width: 640, height: 240, role: "img", "aria-label": label, "data-testid": testid });
}

function frame(node, lo, hi) {
  const ctx = node.getContext("2d");
  const { width: w, height: h } = node;
  ctx.clearRect(0, 0, w, h);
  const color = getComputedStyle(node).color;
  ctx.fillStyle = color;
  ctx.strokeStyle = color;
  ctx.font = "14px sans-serif";
  ctx.fillText(fmt(hi), 2, 12);
  ctx.fillText(fmt(lo), 2, h - 20);
  const span = hi > lo ? hi - lo : 1;
  const y = (v) => h - 24 - ((v - (hi > lo ? lo : lo - 0.5)) / span) * (h - 40);
  return { ctx, w, h, y };
}

// Bands between the percentiles i and 8 - i (extremes, +-1.5, 1, 0.5 sigma), the median
// as a line, and the chosen step marked.
export function drawDistribution(node, dist, marked) {
  const rows = dist.steps.map((s, i) => [s, dist.percentiles[i]]).filter(([, p]) => p);
  if (!rows.length) return;
  const lo = Math.min(...rows.map(([, p]) => p[0]));
  const hi = Math.max(...rows.map(([, p]) => p[p.length - 1]));
  const { ctx, w, h, y } = frame(node, lo, hi);
  const first = rows[0][0];
  const last = rows[rows.length - 1][0];
  const x = (s) => 48 + (last > first ? ((s - first) / (last - first)) * (w - 60) : (w - 60) / 2);
  const widen = rows.length === 1 ? 4 : 0;  // one step: a thin column, not nothing
  for (let band = 0; band < 4; band += 1) {
    ctx.globalAlpha = 0.15 + band * 0.15;
    ctx.beginPath();
    rows.forEach(([s, p], i) => (i ? ctx.lineTo(x(s), y(p[band])) : ctx.moveTo(x(s) - widen, y(p[band]))));
    if (widen) ctx.lineTo(x(first) + widen, y(rows[0][1][band]));
    for (let i = rows.length - 1; i >= 0; i -= 1) {
      const p = rows[i][1];
      ctx.lineTo(x(rows[i][0]) + (i === rows.length - 1 ? widen : 0), y(p[p.length - 1 - band]));
    }
    if (widen) ctx.lineTo(x(first) - widen, y(rows[0][1][rows[0][1].length - 1 - band]));
    ctx.closePath();
    ctx.fill();
  }
  ctx.globalAlpha = 1;
  ctx.beginPath();
  rows.forEach(([s, p], i) => (i ? ctx.lineTo(x(s), y(p[4])) : ctx.moveTo(x(s), y(p[4]))));
  ctx.stroke();
  ctx.fillText(`step ${first}`, 48, h - 4);
  if (last !== first) ctx.fillText(`step ${last}`, w - 90, h - 4);
  if (marked !== undefined) {
    ctx.globalAlpha = 0.6;
    ctx.fillRect(x(marked) - 0.5, 0, 1, h - 16);
    ctx.globalAlpha = 1;
  }
  node.dataset.steps = String(rows.length);
}

export function drawHistogram(node, hist) {
  const top = Math.max(...hist.counts, 0);
  const { ctx, w, h, y } = frame(node, 0, top);
  const lo = hist.edges[0];
  const hi = hist.edges[hist.edges.length - 1];
  const x = (v) => 48 + ((v - lo) / (hi - lo)) * (w - 60);
  ctx.globalAlpha = 0.7;
  hist.counts.forEach((c, i) => {
    const left = x(hist.edges[i]);
    ctx.fillRect(left, y(c), Math.max(1, x(hist.edges[i + 1]) - left - 1), y(0) - y(c));
  });
  ctx.globalAlpha = 1;
  ctx.fillText(fmt(lo), 48, h - 4);
  ctx.fillText(fmt(hi), w - 60, h - 4);
  node.dataset.step = String(hist.step);
}

function slider(label, testid) {
  const input = el("input", { type: "range", min: 0, max: 0, step: 1, value: 0, "data-testid": testid, "aria-label": label });
  const output = el("output", {}, "");
  return { input, output, box: el("label", { class: "step-slider" }, label, input, output) };
}

// A slider over a list of steps read again: it stays on the step the user chose (or the
// last before it, when the list was thinned) unless they were at the newest, which it
// follows. Answers the step it shows.
function follow(input, before, steps) {
  const newest = Math.max(steps.length - 1, 0);
  const wasNewest = !before || Number(input.value) >= before.length - 1;
  const chosen = before ? before[Number(input.value)] : undefined;
  let index = newest;
  if (!wasNewest) {
    index = 0;
    steps.forEach((s, i) => { if (s <= chosen) index = i; });
  }
  input.max = String(newest);
  input.value = String(index);
  return steps[index];
}

// A panel's reads: one at a time and at most one a second (a run may log every step);
// calls meanwhile make one more read after that.
const READ_GAP_MS = 1000;

function serial(read, onError) {
  let busy = false;
  let again = false;
  const go = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try { await read(); } catch (error) { onError(error); }
    setTimeout(() => {
      busy = false;
      if (again) { again = false; go(); }
    }, READ_GAP_MS);
  };
  return go;
}

function histogramPanel(key) {
  const bands = canvas(`Distribution of ${key} over steps`, "distribution");
  const one = canvas(`Histogram of ${key} at the chosen step`, "histogram-at");
  const pick = slider("Step", "histogram-step");
  const note = el("p", { class: "hint", hidden: true });
  const figure = el("figure", { class: "chart media-panel", "data-key": key, "data-testid": "histogram-panel" },
    el("h3", {}, key), bands, pick.box, one, note);
  let dist = null;
  let asked = 0;
  const choose = async () => {
    const step = dist.steps[Number(pick.input.value)];
    pick.output.textContent = String(step);
    drawDistribution(bands, dist, step);
    const mine = ++asked;
    const hist = await call("GET", `${base}/histogram?histogram=${q(key)}&step=${step}`);
    if (mine === asked) drawHistogram(one, hist);
  };
  const read = async () => {
    const got = await call("GET", `${base}/distribution?histogram=${q(key)}`);
    follow(pick.input, dist && dist.steps, got.steps);
    dist = got;
    note.hidden = dist.total_steps <= dist.steps.length;
    note.textContent = `${dist.steps.length} of ${dist.total_steps} steps, evenly spread.`;
    if (dist.steps.length) await choose();
  };
  pick.input.addEventListener("input", () => { choose().catch((e) => say(pick.output, e.message, true)); });
  const refresh = serial(read, (e) => say(pick.output, e.message, true));
  return { figure, ready: refresh(), refresh };
}

function imagePanel(key) {
  const pick = slider("Step", "image-step");
  const img = el("img", { alt: `${key}`, "data-testid": "series-image" });
  const figure = el("figure", { class: "chart media-panel", "data-key": key, "data-testid": "image-panel" },
    el("h3", {}, key), pick.box, el("div", { class: "series-image" }, img));
  const links = new Map();  // artifact id -> signed preview link (minted when first shown)
  let series = null;
  let asked = 0;
  const choose = async () => {
    const { step, artifact_id: artifact } = series.steps[Number(pick.input.value)];
    pick.output.textContent = String(step);
    const mine = ++asked;
    if (!links.has(artifact)) {
      links.set(artifact, (await call("POST", `/api/v1/artifacts/${q(artifact)}/preview`)).url);
    }
    if (mine !== asked) return;
    img.src = links.get(artifact);
    img.alt = `${key} at step ${step}`;
    img.dataset.step = String(step);
  };
  const read = async () => {
    const got = await call("GET", `${base}/images/series?image=${q(key)}`);
    const stepsOf = (s) => s.steps.map((entry) => entry.step);
    follow(pick.input, series && stepsOf(series), stepsOf(got));
    series = got;
    if (series.steps.length) await choose();
  };
  pick.input.addEventListener("input", () => { choose().catch((e) => say(pick.output, e.message, true)); });
  const refresh = serial(read, (e) => say(pick.output, e.message, true));
  return { figure, ready: refresh(), refresh };
}

// Texts a page at a time ("Show more"); once every page is shown, a live run's new texts
// are appended as they come.
function textPanel(key) {
  const list = el("div", { class: "text-entries" });
  const more = el("button", { type: "button", class: "secondary", hidden: true }, "Show more");
  const figure = el("figure", { class: "chart media-panel", "data-key": key, "data-testid": "text-panel" },
    el("h3", {}, key), list, more);
  let start = 0;
  let last = -1;  // the newest step shown
  const read = async () => {
    const page = await call("GET", `${base}/texts?text=${q(key)}&start=${start}`);
    for (const entry of page.texts) {
      if (entry.step <= last) continue;  // shown already
      list.append(el("div", { class: "text-entry", "data-step": entry.step },
        el("span", { class: "hint" }, `step ${entry.step}`), el("pre", {}, entry.text)));
      last = entry.step;
    }
    more.hidden = page.next_step === null;
    start = page.next_step ?? last + 1;
  };
  const newer = async () => { if (more.hidden) await read(); };  // else "Show more" has them
  more.addEventListener("click", () => { read().catch((e) => say(more, e.message, true)); });
  const refresh = serial(newer, (e) => say(more, e.message, true));
  return { figure, ready: refresh(), refresh };
}

const makers = { histograms: histogramPanel, images: imagePanel, texts: textPanel };
const panels = { histograms: new Map(), images: new Map(), texts: new Map() };
const waiting = { histograms: new Set(), images: new Set(), texts: new Set() };  // keys beyond MAX_PANELS

// A key's panel read again, or made (at the end of its section) when the key is new.
function show(box, key) {
  const panel = panels[box].get(key);
  if (panel) return panel.refresh();
  if (panels[box].size >= MAX_PANELS) {  // counted once a key, however often it moves
    waiting[box].add(key);
    say(document.getElementById(`${box}-status`), `The first ${MAX_PANELS} of ${MAX_PANELS + waiting[box].size} keys.`);
    return Promise.resolve();
  }
  const made = makers[box](key);
  panels[box].set(key, made);
  document.getElementById(box).append(made.figure);
  document.getElementById(`${box}-section`).hidden = false;
  return made.ready;
}

async function fill(box, keys) {
  const status = document.getElementById(`${box}-status`);
  const names = Object.keys(keys);
  if (!names.length) return;
  await Promise.all(names.map((key) => show(box, key)));
  const more = waiting[box].size;
  say(status, more ? `The first ${MAX_PANELS} of ${MAX_PANELS + more} keys.` : "");
}

// Every section from the run's keys: new keys get a panel, known ones are read again
// (their sliders stay where the user put them).
async function start() {
  const media = document.getElementById("media");
  delete media.dataset.ready;
  try {
    const [steps, images] = await Promise.all([call("GET", `${base}/steps`), call("GET", `${base}/images`)]);
    await Promise.all([
      fill("histograms", steps.histograms),
      fill("images", images.images),
      fill("texts", steps.texts),
    ]);
    media.dataset.ready = "true";
  } catch (error) {
    for (const box of ["histograms", "images", "texts"]) {
      say(document.getElementById(`${box}-status`), error.message, true);
    }
    media.dataset.ready = "error";
  }
}

// Live: run.js hands on the run's "media" events (new steps of histograms, images and
// texts: their keys and last steps) and says when the stream came back after a gap
// (then everything is read again); when the run ends, what it logged last has arrived.
let reading = start();
const again = () => { reading = reading.then(start); };
document.addEventListener("safeboard:media", (event) => {
  const media = document.getElementById("media");
  reading = reading.then(async () => {
    delete media.dataset.ready;
    const shown = [];
    for (const box of Object.keys(makers)) {
      for (const key of Object.keys(event.detail[box] || {})) shown.push(show(box, key));
    }
    await Promise.all(shown).catch(() => {});
    media.dataset.ready = "true";
  });
});
document.addEventListener("safeboard:caught-up", again);
const badge = document.getElementById("run-status");
if (badge) {
  let status = badge.textContent;
  new MutationObserver(() => {
    if (badge.textContent === status) return;
    status = badge.textContent;
    if (status !== "running") again();
  }).observe(badge, { childList: true, characterData: true, subtree: true });
}
