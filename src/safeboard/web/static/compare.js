// Compare runs: one chart per chosen metric, every selected run that logged it overlaid.
// A chart group (data-keys: compare_page.py, chart_groups.py) is one chart of a line per
// run and metric: a run's lines share its colour, a metric's lines share a dash.
import { el, say } from "./app.js";
import { MetricChart, bindControls, loadCharts } from "./chart.js";

const runs = [...document.querySelectorAll("#compare-runs li[data-run]")].map((item) => ({
  runId: item.dataset.run,
  label: item.dataset.label,
  counts: JSON.parse(item.dataset.counts),
}));
const box = document.getElementById("charts");
const systemBox = document.getElementById("system-charts");  // system/ keys, apart
const charts = new Map();  // picker box -> its chart
const DASHES = [null, [6, 4], [2, 3], [10, 3, 2, 3]];

function sourcesOf(keys) {
  if (keys.length === 1) {
    return runs.filter((r) => Object.hasOwn(r.counts, keys[0]))
      .map((r) => ({ runId: r.runId, label: r.label, count: r.counts[keys[0]] }));
  }
  return runs.flatMap((r, colour) => keys.flatMap((key, m) => (Object.hasOwn(r.counts, key)
    ? [{ runId: r.runId, label: `${r.label} · ${key}`, key, count: r.counts[key], colour, dash: DASHES[m % DASHES.length] }]
    : [])));
}

function make(input) {
  const title = input.value;
  const keys = input.dataset.keys ? JSON.parse(input.dataset.keys) : [title];
  const attributes = { class: "chart", "data-key": title, "data-testid": "chart" };
  if (input.dataset.keys) attributes["data-keys"] = input.dataset.keys;
  const figure = el("figure", attributes, el("h3", {}, title));
  (title.startsWith("system/") && systemBox ? systemBox : box).append(figure);
  const chart = new MetricChart(figure, title, sourcesOf(keys));
  charts.set(input, chart);
  return chart;
}

// The charts shown first: one history request per run for all of them (loadCharts).
async function showAll(inputs) {
  const made = inputs.map(make);
  try { await loadCharts(made); } catch (error) { say(made[0].figure.querySelector(".readout"), error.message, true); }
}

async function show(input) {
  const chart = make(input);
  try { await chart.load(); } catch (error) { say(chart.figure.querySelector(".readout"), error.message, true); }
}

function hide(input) {
  const chart = charts.get(input);
  if (!chart) return;
  if (chart.plot) chart.plot.destroy();
  chart.figure.remove();
  charts.delete(input);
}

bindControls(() => charts.values());
const picker = document.getElementById("metric-picker");
picker.addEventListener("change", (event) => {
  if (event.target.checked) show(event.target); else hide(event.target);
});
showAll([...picker.querySelectorAll("input:checked")])
  .then(() => { box.dataset.ready = "true"; });
