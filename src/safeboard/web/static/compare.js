// Compare runs: one chart per chosen metric, every selected run that logged it overlaid.
import { el, say } from "./app.js";
import { MetricChart, bindControls } from "./chart.js";

const runs = [...document.querySelectorAll("#compare-runs li[data-run]")].map((item) => ({
  runId: item.dataset.run,
  label: item.dataset.label,
  counts: JSON.parse(item.dataset.counts),
}));
const box = document.getElementById("charts");
const charts = new Map();

async function show(key) {
  const sources = runs.filter((r) => Object.hasOwn(r.counts, key))
    .map((r) => ({ runId: r.runId, label: r.label, count: r.counts[key] }));
  const figure = el("figure", { class: "chart", "data-key": key, "data-testid": "chart" }, el("h3", {}, key));
  box.append(figure);
  const chart = new MetricChart(figure, key, sources);
  charts.set(key, chart);
  try { await chart.load(); } catch (error) { say(figure.querySelector(".readout"), error.message, true); }
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
Promise.all([...picker.querySelectorAll("input:checked")].map((input) => show(input.value)))
  .then(() => { box.dataset.ready = "true"; });
