// Two or more jobs side by side: their settings (differences highlighted), final numbers, and their loss
// and accuracy curves overlaid. Runs that differ only in how the gradient is computed (numerical vs
// backprop, same seed) should coincide; the largest loss difference says by how much they do.

import { ApiError, request } from "./api.js";
import { COLORS, LineChart, legend } from "./chart.js";
import { duration, h, number, percent, shortId } from "./format.js";

const SETTINGS = [
  ["Dataset", (s) => s.dataset], ["Hidden", (s) => s.model.hidden_size], ["Init scale", (s) => s.model.weight_init_std],
  ["Iterations", (s) => s.training.iters], ["Batch", (s) => s.training.batch_size],
  ["Learning rate", (s) => s.training.learning_rate], ["Seed", (s) => s.training.seed],
  ["Gradient", (s) => s.gradient.method], ["Blocks", (s) => s.gradient.blocks],
];

export function renderCompare(root, ids) {
  const controller = new AbortController();
  const charts = [];
  root.append(h("a", { href: "#/", class: "back" }, "← All jobs"),
    h("h1", {}, `Compare ${ids.length} job${ids.length === 1 ? "" : "s"}`));
  const body = h("div", { id: "compare-view" }, h("p", { class: "muted" }, "Loading…"));
  root.append(body);
  load(ids, controller.signal).then(({ runs, missing }) => {
    body.replaceChildren();
    if (missing.length) {
      body.append(h("div", { class: "banner banner-error", role: "alert" },
        `Not found (deleted?): ${missing.map(shortId).join(", ")}`));
    }
    if (runs.length < 2) {
      body.append(h("section", { class: "card empty-state" }, h("p", {}, "Comparing needs two or more jobs. "),
        h("a", { href: "#/" }, "Tick finished jobs in the list, then press Compare.")));
      return;
    }
    runs.forEach((run, i) => { run.color = COLORS[i % COLORS.length]; });
    body.append(h("section", { class: "card" }, h("h2", {}, "Runs"), runsTable(runs), agreement(runs)));
    const loss = h("canvas", { class: "chart tall", id: "compare-loss", role: "img", "aria-label": "loss curves" });
    const accuracy = h("canvas", { class: "chart tall", id: "compare-accuracy", role: "img",
      "aria-label": "accuracy curves" });
    const jobLegend = legend(runs.map((r) => ({ label: shortId(r.job.id), color: r.color })));
    body.append(h("div", { class: "charts" },
      h("section", { class: "card" }, h("h2", {}, "Loss per iteration"), jobLegend, loss),
      h("section", { class: "card" }, h("h2", {}, "Accuracy per epoch"),
        legend([...runs.map((r) => ({ label: shortId(r.job.id), color: r.color })),
          { label: "solid: train, dashed: test", color: "#8a8fa3", dashed: true }]), accuracy)));
    const lossChart = new LineChart(loss, { xLabel: "iteration", yLabel: "loss", integerX: true });
    const accuracyChart = new LineChart(accuracy, { xLabel: "epoch", yLabel: "accuracy", yRange: [0, 1],
      integerX: true });
    charts.push(lossChart, accuracyChart);
    lossChart.update(runs.map((r, i) => ({ label: r.job.id, color: r.color, width: lineWidth(i),
      points: r.history.loss.map((y, j) => [j, y]) })));
    accuracyChart.update(runs.flatMap((r, i) => [
      { label: "train", color: r.color, markers: true, width: lineWidth(i),
        points: r.history.train_acc.map((y, j) => [j, y]) },
      { label: "test", color: r.color, markers: true, dashed: true, width: lineWidth(i),
        points: r.history.test_acc.map((y, j) => [j, y]) },
    ]));
  }).catch((err) => {
    if (err.name === "AbortError") return;
    body.replaceChildren(h("div", { class: "banner banner-error", role: "alert" }, `Could not load: ${err.message}`));
  });
  return () => {
    controller.abort();
    charts.forEach((chart) => chart.destroy());
  };
}

/** The first run is drawn widest, so a run that coincides with it shows as a thin line inside a wide one. */
const lineWidth = (index) => (index === 0 ? 3.5 : 1.3);

async function load(ids, signal) {
  const results = await Promise.all(ids.map(async (id) => {
    try {
      const [job, history] = await Promise.all([request(`/v1/jobs/${id}`, { signal }),
        request(`/v1/jobs/${id}/history`, { signal })]);
      return { job, history };
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return { missing: id };
      throw err;
    }
  }));
  return { runs: results.filter((r) => r.job), missing: results.filter((r) => r.missing).map((r) => r.missing) };
}

function runsTable(runs) {
  const differs = SETTINGS.map(([, get]) => new Set(runs.map((r) => String(get(r.job.spec)))).size > 1);
  return h("div", { class: "table-wrap" }, h("table", { class: "compare" },
    h("thead", {}, h("tr", {}, h("th", {}, "Job"), SETTINGS.map(([label], i) => h("th", {
      class: differs[i] ? "differs" : null }, label)), h("th", { class: "num" }, "Final loss"),
    h("th", { class: "num" }, "Train acc"), h("th", { class: "num" }, "Test acc"), h("th", { class: "num" }, "Time"))),
    h("tbody", {}, runs.map((r) => h("tr", { dataset: { jobId: r.job.id } },
      h("td", {}, h("span", { class: "swatch", style: `--color: ${r.color}` }),
        h("a", { href: `#/jobs/${r.job.id}` }, shortId(r.job.id)), " ", h("span", { class: "muted small" },
          r.job.status)),
      SETTINGS.map(([, get], i) => h("td", { class: differs[i] ? "differs" : null }, String(get(r.job.spec)))),
      h("td", { class: "num" }, number(r.history.loss.at(-1))),
      h("td", { class: "num" }, percent(r.history.train_acc.at(-1))),
      h("td", { class: "num" }, percent(r.history.test_acc.at(-1))),
      h("td", { class: "num" }, duration(r.job.progress.elapsed_s)))))),
  h("p", { class: "hint" }, "Settings that differ between the runs are highlighted."));
}

/** How far each run's loss curve is from the first run's, over the iterations both have. */
function agreement(runs) {
  const [first, ...others] = runs;
  return h("ul", { class: "agreement", id: "compare-agreement" }, others.map((run) => {
    const n = Math.min(first.history.loss.length, run.history.loss.length);
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(first.history.loss[i] - run.history.loss[i]));
    const verdict = n === 0 ? "nothing to compare" : worst === 0 ? "the curves are identical"
      : worst < 1e-6 ? "the curves coincide up to rounding" : "the curves differ";
    return h("li", {}, `${shortId(run.job.id)} vs ${shortId(first.job.id)}: largest loss difference `,
      h("strong", {}, n ? number(worst, 3) : "–"), ` over ${n.toLocaleString("en")} iterations: ${verdict}.`);
  }));
}
