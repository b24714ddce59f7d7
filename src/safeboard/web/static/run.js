// A run's page: its charts (loaded only when the chart library is installed), live
// updates from the run's event stream, and its artifacts.
import { call, el, humanSize, liveStream, say } from "./app.js";

const runId = document.querySelector('meta[name="run-id"]').content;
const live = document.getElementById("live");
const chartsBox = document.getElementById("charts");
const systemBox = document.getElementById("system-charts");  // system/ keys (system_charts.py)
const charts = new Map();
let chartModule = null;
const FIGURES = "#charts figure[data-key], #system-charts figure[data-key]";  // the charts the page was made with

// A chart of one metric, or of a group (data-keys, data-counts: chart_groups.py), each
// of its metrics a line; the map finds a group's chart from any of its metrics.
function makeChart(figure) {
  const key = figure.dataset.key;
  if (figure.dataset.keys) {
    const keys = JSON.parse(figure.dataset.keys);
    const counts = JSON.parse(figure.dataset.counts);
    const sources = keys.map((k, i) => ({ runId, label: k, key: k, count: counts[i] }));
    const chart = new chartModule.MetricChart(figure, key, sources);
    for (const k of keys) charts.set(k, chart);
    return chart;
  }
  const chart = new chartModule.MetricChart(figure, key, [
    { runId, label: key, count: Number(figure.dataset.count || 0) },
  ]);
  charts.set(key, chart);
  return chart;
}

async function addChart(figure) {  // a metric that began while the page was open
  await makeChart(figure).load();
}

function newFigure(key) {
  if (systemBox && key.startsWith("system/")) return newSystemFigure(key);
  const figure = el("figure", { class: "chart", "data-key": key, "data-testid": "chart" }, el("h3", {}, key));
  chartsBox.append(figure);
  document.getElementById("no-metrics")?.remove();
  const controls = document.getElementById("controls-box");
  if (controls) controls.hidden = false;
  return figure;
}

function newSystemFigure(key) {  // the first sample shows the section (and the controls)
  const figure = el("figure", { class: "chart", "data-key": key, "data-testid": "system-chart" }, el("h3", {}, key));
  systemBox.append(figure);
  document.getElementById("system-metrics").hidden = false;
  const controls = document.getElementById("controls-box");
  if (controls) controls.hidden = false;
  return figure;
}

// Chart groups (chart_groups.py, the same rules): the run's config names them under
// _charts (add_scalars). Metrics that begin while the page is open join their group's
// chart as soon as the page knows the group: from those named at page load (data-groups),
// then from the run's config, read again when the run changes (its "run" event: a config
// change sends one) and when new metrics begin.
let groups = JSON.parse(chartsBox?.dataset.groups || "{}");

function namedGroups(config) {
  const named = config && config._charts;
  if (!named || typeof named !== "object" || Array.isArray(named)) return {};
  const found = {};
  for (const [title, keys] of Object.entries(named)) {
    if (Array.isArray(keys)) found[title] = keys.filter((k) => typeof k === "string");
  }
  return found;
}

// The groups of two or more among the metrics charted now: [title, keys] (chart_layout).
function layoutGroups(keys) {
  const present = new Set(keys);
  const taken = new Set();
  const found = [];
  for (const [title, wanted] of Object.entries(groups)) {
    const mine = [...new Set(wanted)].filter((k) => present.has(k) && !taken.has(k));
    if (mine.length < 2) continue;
    found.push([title, mine]);
    for (const k of mine) taken.add(k);
  }
  return found;
}

function countOf(key) {
  const chart = charts.get(key);
  const source = chart.sources.find((s) => (s.key ?? chart.key) === key);
  return source ? source.count : 0;
}

// A group's metrics drawn apart (or in a smaller group) become one chart, where the first
// of their charts was.
function regroup() {
  if (!chartModule) return;
  const keys = [...charts.keys()].filter((k) => !k.startsWith("system/"));
  for (const [title, members] of layoutGroups(keys)) {
    const old = new Set(members.map((k) => charts.get(k)));
    const [only] = old;
    if (old.size === 1 && only.sources.length === members.length) continue;  // drawn so
    const figure = el("figure", {
      class: "chart", "data-key": members[0], "data-keys": JSON.stringify(members),
      "data-counts": JSON.stringify(members.map(countOf)), "data-testid": "chart",
    }, el("h3", {}, title));
    const figures = [...old].map((chart) => chart.figure);
    const first = figures.find((f) => figures.every((g) => g === f || f.compareDocumentPosition(g) & Node.DOCUMENT_POSITION_FOLLOWING));
    first.before(figure);
    for (const chart of old) {
      clearTimeout(chart.pending);
      if (chart.plot) chart.plot.destroy();
      chart.figure.remove();
    }
    const left = [...charts].filter(([k, chart]) => old.has(chart) && !members.includes(k));
    addChart(figure).catch((error) => say(live, error.message, true));
    for (const [k] of left) addChart(newFigure(k)).catch((error) => say(live, error.message, true));
  }
}

let reading = null;

function readGroups() {  // the run's config, at most once per 300 ms
  if (reading || !chartsBox) return;
  reading = setTimeout(() => {
    reading = null;
    call("GET", `/api/v1/runs/${runId}`)
      .then((run) => { groups = namedGroups(run.config); regroup(); })
      .catch((error) => say(live, error.message, true));
  }, 300);
}

// Live: the metrics that moved since the last tick, extended with their new points in one
// request a second at most (chart.js: extendCharts), never a whole history per chart.
const moved = new Set();
let tick = null;

function onMetrics(event) {
  const data = JSON.parse(event.data);
  let began = false;
  for (const [key, step] of Object.entries(data.data.last_step || {})) {
    if (charts.has(key)) moved.add(key);
    else began = begin(key) || began;
    say(live, `Live: ${key} at step ${step}`);
  }
  if (began) { regroup(); readGroups(); }
  followTail();
}

// A metric the page has no chart for began: a chart now, or, while the chart library is
// still loading, once it is (startCharts). The stream opens before the library has
// loaded, and its event is the only news of the metric: dropped, the metric had no chart
// until the page was reloaded (a flaky e2e test found it). True when a chart was added.
const early = new Set();
const rendered = new Set([...document.querySelectorAll(FIGURES)]
  .flatMap((figure) => (figure.dataset.keys ? JSON.parse(figure.dataset.keys) : [figure.dataset.key])));

function begin(key) {
  if (!chartModule) {
    if (!rendered.has(key)) early.add(key);  // a rendered one loads its history after this
    return false;
  }
  if (charts.has(key)) return false;
  addChart(newFigure(key)).catch((error) => say(live, error.message, true));
  return true;
}

// Metrics that began after the page was made and before its stream was open sent their
// event to no one: the run's metric list, read once the stream is open, finds them.
async function beginMissed() {
  const run = await call("GET", `/api/v1/runs/${runId}`);
  let began = false;
  for (const summary of run.metrics) {
    if (charts.has(summary.key)) {
      if (summary.count > countOf(summary.key)) moved.add(summary.key);
    } else {
      began = begin(summary.key) || began;
    }
  }
  if (began) { regroup(); readGroups(); }
  followTail();
}

function followTail() {
  if (tick || !moved.size) return;
  tick = setTimeout(() => {
    const due = [...new Set([...moved].map((key) => charts.get(key)))];
    moved.clear();
    chartModule.extendCharts(runId, due)
      .then((waiting) => { for (const chart of waiting) moved.add(chart.key); })
      .catch((error) => say(live, error.message, true))
      .finally(() => { tick = null; followTail(); });
  }, 1000);
}

function onRun(event) {
  const data = JSON.parse(event.data);
  const status = data.data && data.data.status;
  if (status) showStatus(status);
  readGroups();  // its config may have changed
}

function showStatus(status) {
  const badge = document.getElementById("run-status");
  if (badge.textContent === status) return;
  badge.textContent = status;
  badge.className = `status status-${status}`;
  if (status !== "running") {
    say(live, `The run is ${status}.`);
    showArtifacts();  // what it saved last has arrived by now
  }
}

async function startCharts() {
  if (!chartsBox) return;  // the chart library is missing: the page says so
  chartModule = await import("./chart.js");
  chartModule.bindControls(() => new Set(charts.values()));
  // Every chart of the page from one history request (per 50 metrics).
  const figures = document.querySelectorAll(FIGURES);
  await chartModule.loadCharts([...figures].map(makeChart));
  const began = [...early].filter(begin);
  early.clear();
  if (began.length) { regroup(); readGroups(); }
  chartsBox.dataset.ready = "true";
  performance.mark("charts-ready");  // read by bench/dashboard.py
}

// Artifacts: a page at a time ("Show more"), and a preview link minted for an image only
// when its row comes near the screen (a run may hold thousands of images).
const ARTIFACT_PAGE = 100;

function mintPreview(cell) {
  const { artifact, name } = cell.dataset;
  call("POST", `/api/v1/artifacts/${encodeURIComponent(artifact)}/preview`).then((preview) => {
    cell.append(el("img", { src: preview.url, alt: `Preview of ${name}` }));
  }).catch((error) => { cell.textContent = `no preview: ${error.message}`; });
}

const previewer = new IntersectionObserver((entries, observer) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    observer.unobserve(entry.target);
    mintPreview(entry.target);
  }
}, { rootMargin: "300px" });

// A click on "Download" goes through a signed link (S12), minted at that moment:
// Chromium sent a plain <a download> request without the session's binding (sw.js did
// not add it; tests/e2e/test_dashboard.py saw a 401 saved as a file). The href stays for
// "open in a new tab", a navigation, which the worker does see.
function onDownload(event) {
  event.preventDefault();
  const link = event.currentTarget;
  call("POST", `/api/v1/artifacts/${encodeURIComponent(link.dataset.artifact)}/preview`)
    .then((signed) => el("a", { href: signed.url, download: link.dataset.name }).click())
    .catch((error) => { link.textContent = `Download failed: ${error.message}`; });
}

// Types the server may show inline (artifacts/ranges.py INLINE_TYPES); an SVG downloads.
const RASTER = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

function artifactRow(artifact) {
  const download = el("a", {
    href: `/api/v1/artifacts/${encodeURIComponent(artifact.id)}/content`,
    "data-artifact": artifact.id, "data-name": artifact.name,
  }, "Download");
  download.addEventListener("click", onDownload);
  const row = el("tr", { "data-artifact": artifact.id },
    el("th", { scope: "row" }, artifact.name),
    el("td", {}, artifact.kind),
    el("td", { class: "num", title: `${artifact.size} bytes` }, humanSize(artifact.size)),
    el("td", {}, artifact.step === null ? "" : String(artifact.step)),
    el("td", {}, artifact.state === "ready" ? download : artifact.state));
  if (artifact.state === "ready" && RASTER.has(artifact.content_type)) {
    const cell = el("td", { "data-artifact": artifact.id, "data-name": artifact.name });
    row.append(cell);
    previewer.observe(cell);
  } else {
    row.append(el("td", {}));
  }
  return row;
}

async function showArtifacts() {
  const status = document.getElementById("artifacts-status");
  const box = document.getElementById("artifacts");
  try {
    const path = `/api/v1/runs/${runId}/artifacts?limit=${ARTIFACT_PAGE}`;
    let listed = await call("GET", path);
    if (!listed.items.length) {
      say(status, "No artifacts: files and images a run saves appear here.");
      return;
    }
    const head = el("tr", {}, ["Name", "Kind", "Bytes", "Step", "File", "Preview"].map((h) => el("th", { scope: "col" }, h)));
    const body = el("tbody", {}, listed.items.map(artifactRow));
    const more = el("button", { type: "button", class: "secondary", id: "more-artifacts" }, "Show more artifacts");
    const shown = () => {
      const total = listed.total;
      more.hidden = !listed.next_cursor;
      say(status, listed.next_cursor ? `${body.rows.length} of ${total} artifacts shown`
        : `${total} artifact${total === 1 ? "" : "s"}`);
    };
    more.addEventListener("click", async () => {
      more.disabled = true;
      try {
        listed = await call("GET", `${path}&cursor=${encodeURIComponent(listed.next_cursor)}`);
        body.append(...listed.items.map(artifactRow));
        shown();
      } catch (error) {
        say(status, error.message, true);
      } finally {
        more.disabled = false;
      }
    });
    box.replaceChildren(el("table", { class: "runs" }, el("thead", {}, head), body), more);
    shown();
  } catch (error) {
    if (error.status === 404 || error.status === 405) say(status, "This server does not store artifacts yet.");
    else say(status, error.message, true);
  }
}

// Editors: notes and tags (PATCH /api/v1/runs/{id}, with the session's CSRF token).
const editStatus = () => document.getElementById("edit-status");
document.getElementById("notes-form")?.addEventListener("submit", (event) => {
  event.preventDefault();
  const notes = new FormData(event.target).get("notes");
  call("PATCH", `/api/v1/runs/${runId}`, { notes }).then((run) => {
    document.getElementById("notes-text").textContent = run.notes;
    event.target.closest("details").open = false;
  }).catch((error) => say(editStatus(), error.message, true));
});
document.getElementById("tag-form")?.addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  call("PATCH", `/api/v1/runs/${runId}`, { tags: { [form.get("key")]: form.get("value") || "" } })
    .then(() => location.reload()).catch((error) => say(editStatus(), error.message, true));
});
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-tag]");
  if (!button) return;
  call("PATCH", `/api/v1/runs/${runId}`, { tags: { [button.dataset.tag]: null } })
    .then(() => location.reload()).catch((error) => say(editStatus(), error.message, true));
});

// After a gap in the stream: the run's status now, every chart drawn again, a chart for
// each metric that began meanwhile, and the media sections read again.
async function catchUp() {
  document.dispatchEvent(new CustomEvent("safeboard:caught-up"));  // media.js reads again
  const run = await call("GET", `/api/v1/runs/${runId}`);
  showStatus(run.status);
  groups = namedGroups(run.config);
  const known = new Set();
  for (const summary of run.metrics) {
    const chart = charts.get(summary.key);
    if (chart) {
      const source = chart.sources.find((s) => (s.key ?? chart.key) === summary.key);
      source.count = summary.count;
      if (!chart.range) known.add(chart);
    } else if (chartModule) {
      addChart(newFigure(summary.key)).catch((error) => say(live, error.message, true));
    }
  }
  regroup();
  if (chartModule) await chartModule.loadCharts([...known].filter((chart) => chart.figure.isConnected));
}

// New steps of histograms, images and texts: media.js draws them.
function onMedia(event) {
  const data = JSON.parse(event.data);
  document.dispatchEvent(new CustomEvent("safeboard:media", { detail: data.data }));
}

liveStream(`/api/v1/runs/${runId}/events`, { metrics: onMetrics, run: onRun, media: onMedia }, live,
  () => catchUp().catch((error) => say(live, error.message, true)),
  () => beginMissed().catch((error) => say(live, error.message, true)));

startCharts().catch((error) => say(live, `Charts failed: ${error.message}`, true));
showArtifacts();
