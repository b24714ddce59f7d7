// Metric charts on uPlot (served from our own origin; it styles through the CSSOM only,
// which the CSP allows). One chart is one metric of one or more runs. Histories arrive
// downsampled by the server (min, max and last per bucket), the charts of a page in one
// request per run (loadCharts); zooming fetches the chosen step range again at full
// resolution of the screen; a live chart asks only for the points after its last step
// (extendCharts) and folds them into its buckets here.
import uPlot from "./vendor/uPlot.esm.js";
import { call, el } from "./app.js";

const COLOURS = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0f766e", "#a16207", "#be185d"];
const WALL_TIME_LIMIT = 250000;  // points fetched one by one for a wall-time axis
const HEIGHT = 260;
const BATCH = 50;  // metrics in one history request (the server's bound, vocabulary.py MAX_HISTORY_KEYS)

function num(value) {
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  return null;  // "NaN", "Infinity", "-Infinity": not drawable
}

// TensorBoard's smoothing: an exponential moving average, debiased at the start.
export function smooth(values, weight) {
  if (!weight) return values;
  const out = new Array(values.length);
  let last = 0, n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null) { out[i] = null; continue; }
    last = last * weight + (1 - weight) * v;
    n += 1;
    out[i] = last / (1 - Math.pow(weight, n));
  }
  return out;
}

// The metric keys go in the query (`?metric=`), so no key can read as another route.
export function historyPath(runId, keys, params = {}) {
  const query = new URLSearchParams();
  for (const key of keys) query.append("metric", key);
  for (const [name, value] of Object.entries(params)) {
    for (const v of [].concat(value)) query.append(name, String(v));
  }
  return `/api/v1/runs/${encodeURIComponent(runId)}/history?${query}`;
}

export function pointsPath(runId, key, params = {}) {
  const query = new URLSearchParams({ metric: key, ...params });
  return `/api/v1/runs/${encodeURIComponent(runId)}/points?${query}`;
}

export function fmtValue(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  const a = Math.abs(v);
  return (a !== 0 && (a < 1e-3 || a >= 1e6)) ? v.toExponential(4) : String(Number(v.toPrecision(6)));
}

function fromBuckets(h) {
  return { x: h.last_step, last: h.last.map(num), min: h.min.map(num), max: h.max.map(num), wall: false };
}

// What a chart shows; shared by every chart of a page. onZoom(range) hears drag zooms.
export const view = { smoothing: 0, log: false, axis: "step", onZoom: null };

export class MetricChart {
  // sources: [{runId, label, count, key, colour, dash}] (count: points logged, from the
  // summary; key: the source's metric when it is not the chart's, as in a chart group;
  // colour: an index into COLOURS, else the source's; dash: uPlot's, for a solid line none)
  constructor(figure, key, sources) {
    this.figure = figure;
    this.key = key;
    this.sources = sources;
    this.range = null;  // [start, end] steps when zoomed
    this.plot = null;
    this.loaded = null;  // per source: {x, last, min, max}
    this.readout = el("p", { class: "readout", "aria-live": "off" });
    this.box = el("div", { class: "plot" });
    figure.append(this.box, this.readout);
    this.pending = null;
  }

  width() { return Math.max(280, this.figure.clientWidth - 16); }

  buckets() { return Math.min(2000, Math.max(100, Math.floor(this.width()))); }

  async fetchSource(source) {
    const wall = view.axis === "time";
    if (wall && source.count <= WALL_TIME_LIMIT) {
      const range = this.range ? { start: this.range[0], end: this.range[1] } : {};
      const p = await call("GET", pointsPath(source.runId, source.key ?? this.key, range));
      const values = p.values.map(num);
      return { x: p.times, last: values, min: null, max: null, wall: true };
    }
    if (wall) this.notice = `Wall time is drawn for up to ${WALL_TIME_LIMIT.toLocaleString()} points; this metric has more, so it is shown by step.`;
    const params = { buckets: this.buckets() };
    if (this.range) Object.assign(params, { start: this.range[0], end: this.range[1] });
    const key = source.key ?? this.key;
    const answer = await call("GET", historyPath(source.runId, [key], params));
    return fromBuckets(answer.metrics[key]);
  }

  async load() {
    this.notice = "";
    this.loaded = await Promise.all(this.sources.map((s) => this.fetchSource(s)));
    this.draw();
  }

  // Drawn by step from whole downsampled histories, so loadCharts may batch it.
  batchable() { return view.axis === "step"; }

  // Following the run's tail: one run (a metric, or a chart group's metrics), by step, not
  // zoomed, every line drawn from buckets and holding a point.
  tailable() {
    const loaded = this.loaded;
    const one = this.sources.every((source) => source.runId === this.sources[0].runId);
    return Boolean(loaded && loaded.length && one && loaded.every((s) => !s.wall && s.x.length)
      && !this.range && view.axis === "step");
  }

  lastStep(line = 0) { const x = this.loaded[line].x; return x[x.length - 1]; }

  // Fold a tail (raw points after lastStep()) into a line's drawn buckets: each new point
  // is a bucket of its own; past twice the screen's buckets, neighbours are joined in pairs
  // (min of mins, max of maxes, the later last), so the band still holds every extreme.
  extend(tail, line = 0) {
    const s = this.loaded[line];
    const after = this.lastStep(line);
    for (let i = 0; i < tail.steps.length; i++) {
      if (tail.steps[i] <= after) continue;
      const v = num(tail.values[i]);
      s.x.push(tail.steps[i]); s.last.push(v); s.min.push(v); s.max.push(v);
    }
    this.sources[line].count += tail.steps.length;
    while (s.x.length > 2 * this.buckets()) halve(s);
    this.update();
  }

  // Reload soon (live updates), at most once a second, and never while zoomed in.
  refresh() {
    if (this.range || this.pending) return;
    this.pending = setTimeout(() => { this.pending = null; this.load().catch(() => {}); }, 1000);
  }

  data() {
    const positive = (v) => (view.log && v !== null && v <= 0 ? null : v);
    const clean = (a) => (a ? a.map(positive) : a);
    if (this.loaded.length === 1) {
      const s = this.loaded[0];
      const last = clean(s.last);
      const series = [s.x, smooth(last, view.smoothing)];
      if (view.smoothing) series.push(last);
      if (s.min) series.push(clean(s.min), clean(s.max));
      return series;
    }
    return uPlot.join(this.loaded.map((s) => [s.x, smooth(clean(s.last), view.smoothing)]));
  }

  options() {
    const wall = this.loaded.some((s) => s.wall);
    const single = this.loaded.length === 1;
    const series = [{ label: wall ? "time" : "step", value: (u, v) => (v === null ? "—" : wall ? new Date(v * 1000).toLocaleString() : String(v)) }];
    const bands = [];
    if (single) {
      const s = this.loaded[0];
      series.push({ label: this.sources[0].label, stroke: COLOURS[0], width: 2, value: (u, v) => fmtValue(v), spanGaps: true });
      if (view.smoothing) series.push({ label: "raw", stroke: "#1f5fbf55", width: 1, value: (u, v) => fmtValue(v), spanGaps: true });
      if (s.min) {
        const i = series.length;
        series.push({ label: "min", stroke: "#1f5fbf33", width: 1, value: (u, v) => fmtValue(v) });
        series.push({ label: "max", stroke: "#1f5fbf33", width: 1, value: (u, v) => fmtValue(v) });
        bands.push({ series: [i + 1, i], fill: "#1f5fbf1a" });
      }
    } else {
      this.sources.forEach((source, i) => series.push({
        label: source.label, stroke: COLOURS[(source.colour ?? i) % COLOURS.length], width: 2,
        value: (u, v) => fmtValue(v), spanGaps: true, ...(source.dash ? { dash: source.dash } : {}),
      }));
    }
    return {
      width: this.width(), height: HEIGHT, series, bands,
      scales: { x: { time: wall }, y: { distr: view.log ? 3 : 1 } },
      axes: [{}, { size: 64, values: (u, splits) => splits.map(fmtValue) }],
      cursor: { sync: { key: "metrics" }, drag: { x: true, y: false, setScale: false } },
      legend: { live: true },
      hooks: {
        setSelect: [(u) => this.zoomTo(u)],
        setCursor: [(u) => this.showReadout(u)],
      },
    };
  }

  showReadout(u) {
    const i = u.cursor.idx;
    if (i === null || i === undefined) return;  // cleared when the pointer leaves
    const x = u.data[0][i];
    const parts = [];
    for (let s = 1; s < u.series.length; s++) {
      if (u.series[s].label === "min" || u.series[s].label === "max" || u.series[s].label === "raw") continue;
      parts.push(`${u.series[s].label}: ${fmtValue(u.data[s][i])}`);
    }
    const where = this.loaded.some((s) => s.wall) ? u.series[0].value(u, x) : `step ${x}`;
    this.readout.textContent = `${where} · ${parts.join(" · ")}`;
  }

  zoomTo(u) {
    if (u.select.width < 4) return;
    const lo = u.posToVal(u.select.left, "x");
    const hi = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    if (this.loaded.some((s) => s.wall)) {  // every point is here already
      u.setScale("x", { min: lo, max: hi });
      this.zoomedWall = true;
      return;
    }
    this.zoomSteps(Math.max(0, Math.floor(lo)), Math.max(0, Math.ceil(hi)));
    if (view.onZoom) view.onZoom(this.range);
  }

  // Show steps lo..hi (inclusive), fetched again at the screen's resolution.
  zoomSteps(lo, hi) {
    this.range = [lo, hi];
    this.zoomedWall = false;
    return this.load().catch((error) => { this.readout.textContent = error.message; });
  }

  resetZoom() {
    if (!this.range && !this.zoomedWall) return Promise.resolve();
    this.range = null;
    this.zoomedWall = false;
    return this.load();
  }

  // New data, same options: uPlot keeps its canvas (a live tick redraws nothing else).
  update() {
    if (!this.plot) { this.draw(); return; }
    const data = this.data();
    this.plot.setData(data);
    this.figure.dataset.points = String(data[0].length);
  }

  draw() {
    const data = this.data();
    if (this.plot) this.plot.destroy();
    this.plot = new uPlot(this.options(), data, this.box);
    this.figure.dataset.points = String(data[0].length);
    this.readout.textContent = this.notice || "";
    this.figure.dataset.zoomed = this.range ? "true" : "false";
    this.over = this.plot.over;
    this.over.addEventListener("dblclick", () => { this.resetZoom().catch(() => {}); });
    this.over.addEventListener("mouseleave", () => { this.readout.textContent = ""; });
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: this.width(), height: HEIGHT });
  }
}

function joined(a, b, pick) {
  if (a === null) return b;
  if (b === null) return a;
  return pick(a, b);
}

// Buckets joined in pairs, in place: [x, last] of the later, min and max of both.
function halve(s) {
  const n = s.x.length;
  const keys = ["x", "last", "min", "max"];
  const out = Object.fromEntries(keys.map((k) => [k, []]));
  for (let i = 0; i < n; i += 2) {
    const j = Math.min(i + 1, n - 1);
    out.x.push(s.x[j]);
    out.last.push(s.last[j]);
    out.min.push(joined(s.min[i], s.min[j], Math.min));
    out.max.push(joined(s.max[i], s.max[j], Math.max));
  }
  for (const k of keys) s[k] = out[k];
}

function groups(list, size) {
  const out = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

// Draw charts from one history request per run and step range (BATCH metrics at most in
// each): a page of N charts costs one request, not N. Charts drawn by wall time load
// their points one by one (load).
export async function loadCharts(charts) {
  const asked = new Map();  // run and range -> {runId, range, entries: [[chart, index]]}
  const alone = [];
  const fetched = new Map();  // chart -> its sources' histories, set once all arrived
  for (const chart of charts) {
    if (!chart.batchable()) { alone.push(chart.load()); continue; }
    fetched.set(chart, new Array(chart.sources.length));
    chart.sources.forEach((source, index) => {
      const id = `${source.runId} ${chart.range ? chart.range.join("-") : ""}`;
      if (!asked.has(id)) asked.set(id, { runId: source.runId, range: chart.range, entries: [] });
      asked.get(id).entries.push([chart, index]);
    });
  }
  const requests = [];
  for (const { runId, range, entries } of asked.values()) {
    const params = { buckets: Math.max(...entries.map(([chart]) => chart.buckets())) };
    if (range) Object.assign(params, { start: range[0], end: range[1] });
    for (const group of groups(entries, BATCH)) {
      const keyOf = ([chart, index]) => chart.sources[index].key ?? chart.key;
      const keys = [...new Set(group.map(keyOf))];
      requests.push(call("GET", historyPath(runId, keys, params)).then((answer) => {
        for (const entry of group) fetched.get(entry[0])[entry[1]] = fromBuckets(answer.metrics[keyOf(entry)]);
      }));
    }
  }
  await Promise.all([...requests, ...alone]);
  for (const [chart, loaded] of fetched) {
    chart.notice = "";
    chart.loaded = loaded;
    chart.draw();
  }
}

// Extend a run's live charts with what was logged since each line's last step: one
// request for all of them (BATCH metrics each; each line of a chart group is one), raw
// points back; a metric with more new points than a tail holds comes back downsampled and
// is drawn again. Charts that cannot follow a tail (by wall time, zoomed, a line without
// points) reload as before.
// Answers the charts still on their first load: the caller asks again for them later (a
// batch logged while a chart loads may not be in what it loads).
export async function extendCharts(runId, charts) {
  const following = [];
  const waiting = [];
  for (const chart of charts) {
    if (chart.tailable()) following.push(chart);
    else if (chart.loaded && !chart.range) chart.refresh();
    else if (!chart.loaded) waiting.push(chart);
  }
  const buckets = Math.max(0, ...following.map((chart) => chart.buckets()));
  const lines = following.flatMap((chart) => chart.sources.map((source, line) => [chart, line]));
  const keyOf = ([chart, line]) => chart.sources[line].key ?? chart.key;
  await Promise.all(groups(lines, BATCH).map(async (group) => {
    const after = group.map(([chart, line]) => chart.lastStep(line));
    const path = historyPath(runId, group.map(keyOf), { buckets, after_step: after });
    const answer = await call("GET", path);
    for (const [chart, line] of group) {
      const got = answer.metrics[keyOf([chart, line])];
      if (!chart.tailable()) continue;  // zoomed or switched to wall time meanwhile
      if ("steps" in got) chart.extend(got, line);
      else { chart.loaded[line] = fromBuckets(got); chart.update(); }
    }
  }));
  return waiting;
}

// Wire the shared controls (smoothing, log scale, x axis, reset) to a set of charts.
export function bindControls(charts) {
  const smoothing = document.getElementById("smoothing");
  const shown = document.getElementById("smoothing-value");
  const redraw = () => { for (const c of charts()) if (c.loaded) c.draw(); };
  smoothing.addEventListener("input", () => {
    view.smoothing = Number(smoothing.value);
    shown.textContent = smoothing.value;
    redraw();
  });
  document.getElementById("log-scale").addEventListener("change", (event) => {
    view.log = event.target.checked;
    redraw();
  });
  document.getElementById("x-axis").addEventListener("change", (event) => {
    view.axis = event.target.value;
    const all = [...charts()];
    for (const c of all) c.range = null;
    loadCharts(all).catch(() => {});
  });
  // Zooming from the keyboard: a step range typed into the form, applied to every chart.
  const form = document.getElementById("zoom-form");
  const from = document.getElementById("zoom-from");
  const to = document.getElementById("zoom-to");
  view.onZoom = ([lo, hi]) => { from.value = String(lo); to.value = String(hi); };
  from.addEventListener("input", () => to.setCustomValidity(""));
  to.addEventListener("input", () => to.setCustomValidity(""));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const lo = Number(from.value);
    const hi = Number(to.value);
    if (from.value === "" || to.value === "" || !(hi > lo) || !Number.isSafeInteger(hi)) {
      to.setCustomValidity("Type two steps, the second larger than the first.");
      to.reportValidity();
      return;
    }
    const all = [...charts()];
    for (const c of all) { c.range = [lo, hi]; c.zoomedWall = false; }
    loadCharts(all).catch(() => {});
  });
  document.getElementById("reset-zoom").addEventListener("click", () => {
    from.value = "";
    to.value = "";
    const zoomed = [...charts()].filter((c) => c.range || c.zoomedWall);
    for (const c of zoomed) { c.range = null; c.zoomedWall = false; }
    loadCharts(zoomed).catch(() => {});
  });
  const observer = new ResizeObserver(() => { for (const c of charts()) c.resize(); });
  observer.observe(document.getElementById("charts"));
}
