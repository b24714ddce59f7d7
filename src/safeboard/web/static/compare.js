// Compare runs: one chart per chosen metric, every selected run that logged it overlaid.
import { el, say } from "./app.js";
import { MetricChart, bindControls, loadCharts } from "./chart.js";

const runs = [...document.querySelectorAll("#compare-runs li[data-run]")].map((item) => ({
  runId: item.dataset.run,
  label: item.dataset.label,
  counts: JSON.parse(item.dataset.counts),
}));
const box = document.getElementById("charts");
const systemBox = document.getElementById("system-charts");  // system/ keys, apart
const charts = new Map();

function make(key) {
  const sources = runs.filter((r) => Object.hasOwn(r.counts, key))
    .map((r) => ({ runId: r.runId, label: r.label, count: r.counts[key] }));
  const figure = el("figure", { class: "chart", "data-key": key, "data-testid": "chart" }, el("h3", {}, key));
  (key.startsWith("system/") && systemBox ? systemBox : box).append(figure);
  const chart = new MetricChart(figure, key, sources);
  charts.set(key, chart);
  return chart;
}

// The charts shown first: one history request per run for all of them (loadCharts).
async function showAll(keys) {
  const made = keys.map(make);
  try { await loadCharts(made); } catch (error) { say(made[0].figure.querySelector(".readout"), error.message, true); }
}

async function show(key) {
  const chart = make(key);
  try { await chart.load(); } catch (error) { say(chart.figure.querySelector(".readout"), error.message, true); }
}

function hide(key) {
  const chart = charts.get(key);
  if (!chart) return;
  if (chart.plot) chart.plot.destroy();
  chart.figure.remove();
  charts.delete(key);
}

bindControls(() => charts.values());
const picker = document.getElementById("metric-picker");
picker.addEventListener("change", (event) => {
  if (event.target.checked) show(event.target.value); else hide(event.target.value);
});
showAll([...picker.querySelectorAll("input:checked")].map((input) => input.value))
  .then(() => { box.dataset.ready = "true"; });
