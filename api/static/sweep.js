// One sweep: every run's loss and test-accuracy curves overlaid (the best run drawn thick), and the results
// table, sortable by any column. Polled while any of its jobs is queued or running; a finished run's
// history is read once, a running one's at every poll. A diverged run (NaN loss) is marked in the table,
// in the legend, and its curve stops where the loss stopped being a number.

import { ApiError, request } from "./api.js";
import { COLORS, LineChart, legend } from "./chart.js";
import { describe, duration, h, number, percent, progressBar, shortId, statusBadge } from "./format.js";

const POLL_MS = 1500;
const FINISHED = ["succeeded", "failed", "cancelled", "deleted"];

/** The table's columns after the varied settings: [key, label, value of a run, numeric]. */
const RESULT_COLUMNS = [
  ["status", "Status", (r) => r.status, false],
  ["final_loss", "Final loss", (r) => r.final_loss, true],
  ["train_acc", "Train acc", (r) => r.train_acc, true],
  ["test_acc", "Test acc", (r) => r.test_acc, true],
  ["iteration", "Iterations", (r) => r.iteration, true],
  ["elapsed_s", "Time", (r) => r.elapsed_s, true],
];

export function renderSweep(root, id) {
  const view = new SweepView(root, id);
  view.start();
  return () => view.destroy();
}

class SweepView {
  constructor(root, id) {
    Object.assign(this, { root, id });
    this.controller = new AbortController();
    this.histories = new Map(); // job id -> history
    this.final = new Set(); // job ids whose history was read after the job ended: it will not change
    this.sort = { key: "rank", descending: false };
  }

  async start() {
    try {
      this.sweep = await request(`/v1/sweeps/${this.id}`, { signal: this.controller.signal });
    } catch (err) {
      if (err.name === "AbortError") return;
      this.root.append(err instanceof ApiError && err.status === 404 ? notFound(this.id) : failure(err));
      return;
    }
    this.build();
    await this.poll();
  }

  destroy() {
    this.controller.abort();
    clearTimeout(this.timer);
    this.lossChart?.destroy();
    this.accuracyChart?.destroy();
  }

  async poll() {
    try {
      this.sweep = await request(`/v1/sweeps/${this.id}`, { signal: this.controller.signal });
      await this.loadHistories();
      this.el.error.hidden = true;
      this.render();
    } catch (err) {
      if (err.name === "AbortError") return;
      this.el.error.textContent = `Could not refresh the sweep: ${err.message}`;
      this.el.error.hidden = false;
    }
    if (this.sweep.status !== "finished") this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  async loadHistories() {
    const stale = this.sweep.runs.filter((run) => run.status !== "deleted" && run.status !== "queued" &&
      !this.final.has(run.job_id));
    const loaded = await Promise.all(stale.map((run) => request(run.links.history, { signal: this.controller.signal })
      .catch((err) => {
        if (err instanceof ApiError && err.status === 404) return null; // deleted meanwhile
        throw err;
      })));
    stale.forEach((run, i) => {
      if (!loaded[i]) return;
      this.histories.set(run.job_id, loaded[i]);
      if (FINISHED.includes(run.status)) this.final.add(run.job_id);
    });
  }

  build() {
    const { sweep } = this;
    this.el = {
      badge: h("span", { id: "sweep-status" }), progress: h("div", { class: "job-progress", id: "sweep-progress" }),
      actions: h("div", { class: "actions" }), notice: h("div", { class: "banner", hidden: true }),
      error: h("div", { class: "banner banner-error", role: "alert", hidden: true }),
      legend: h("div", { id: "sweep-legend" }), table: h("div", { class: "table-wrap" }),
      loss: h("canvas", { class: "chart tall", id: "sweep-loss", role: "img", "aria-label": "every run's loss" }),
      accuracy: h("canvas", { class: "chart tall", id: "sweep-accuracy", role: "img",
        "aria-label": "every run's test accuracy" }),
    };
    const title = sweep.name ? `Sweep ${sweep.name} ` : `Sweep ${shortId(sweep.id)} `;
    this.root.append(h("div", { class: "sweep-view", id: "sweep-view", dataset: { sweepId: sweep.id } },
      h("a", { href: "#/", class: "back" }, "← All jobs"),
      h("div", { class: "job-head" },
        h("div", {}, h("h1", {}, title, this.el.badge),
          h("p", { class: "muted" }, `${sweep.size} jobs over ${sweep.axes.join(" × ")} · ${describe(sweep.base)} · `,
            h("code", { class: "small" }, sweep.id))),
        this.el.actions),
      this.el.notice, this.el.error,
      h("section", { class: "card" }, this.el.progress),
      h("section", { class: "card" }, h("h2", {}, "Every run"), this.el.legend,
        h("div", { class: "charts" },
          h("div", {}, h("h3", {}, "Loss per iteration"), this.el.loss),
          h("div", {}, h("h3", {}, "Test accuracy per evaluation"), this.el.accuracy))),
      h("section", { class: "card" }, h("h2", {}, "Results"),
        h("p", { class: "hint" }, "Best first: succeeded runs by test accuracy, then lower loss. Click a column to " +
          "sort by it."), this.el.table)));
    this.lossChart = new LineChart(this.el.loss, { xLabel: "iteration", yLabel: "loss", integerX: true,
      empty: "Waiting for the first iterations…" });
    this.accuracyChart = new LineChart(this.el.accuracy, { xLabel: "iteration", yLabel: "test accuracy",
      yRange: [0, 1], integerX: true, empty: "Accuracy is measured once per epoch…" });
    this.render();
  }

  render() {
    const { sweep, el } = this;
    this.root.querySelector("#sweep-view").dataset.status = sweep.status;
    el.badge.replaceChildren(statusBadge(sweep.status));
    const ended = sweep.runs.filter((run) => FINISHED.includes(run.status));
    const done = sweep.runs.reduce((n, run) => n + (FINISHED.includes(run.status) ? run.total : run.iteration), 0);
    const total = sweep.runs.reduce((n, run) => n + run.total, 0);
    const counts = Object.entries(sweep.counts).filter(([, n]) => n).map(([status, n]) => `${n} ${status}`);
    const outcome = sweep.status !== "finished" ? "running" : sweep.counts.succeeded ? "succeeded"
      : sweep.counts.cancelled ? "cancelled" : "failed";
    el.progress.replaceChildren(progressBar({ iteration: done, total }, outcome), h("p", { class: "muted", id: "sweep-counts" }, `${ended.length} of ${sweep.size} jobs ended · ` +
      counts.join(" · ")));
    this.renderActions();
    this.renderCharts();
    this.renderTable();
  }

  /** Runs in the sweep's own order, each with its colour (fixed, whatever the table's order). */
  coloured() {
    return [...this.sweep.runs].sort((a, b) => a.index - b.index)
      .map((run) => ({ ...run, color: COLORS[run.index % COLORS.length], label: label(run) }));
  }

  renderCharts() {
    const runs = this.coloured();
    const best = this.sweep.best;
    const width = (run) => (run.job_id === best ? 3.5 : best ? 1.1 : 1.5);
    const drawn = runs.filter((run) => this.histories.has(run.job_id));
    this.el.legend.replaceChildren(legend(runs.map((run) => ({ color: run.color, dashed: run.diverged,
      label: `${run.label}${run.job_id === best ? " (best)" : ""}${run.diverged ? " (diverged)" : ""}` }))));
    this.lossChart.update(drawn.map((run) => ({ label: run.label, color: run.color, width: width(run),
      dashed: run.diverged,
      points: this.histories.get(run.job_id).loss.map((y, i) => [i + 1, y === null ? NaN : y]) })));
    this.accuracyChart.update(drawn.map((run) => {
      const history = this.histories.get(run.job_id);
      return { label: run.label, color: run.color, width: width(run), markers: true, dashed: run.diverged,
        points: history.test_acc.map((y, i) => [history.epoch_iters[i], y]) };
    }));
    this.el.loss.dataset.best = best || "";
  }

  renderTable() {
    const { sweep, sort } = this;
    const colours = new Map(this.coloured().map((run) => [run.job_id, run.color]));
    const columns = [["rank", "#", (r) => sweep.runs.indexOf(r), true],
      ...sweep.axes.map((axis) => [`param:${axis}`, axis, (r) => r.params[axis], true]), ...RESULT_COLUMNS];
    const [, , value] = columns.find(([key]) => key === sort.key) ?? columns[0];
    const rows = [...sweep.runs].sort((a, b) => compare(value(a), value(b), sort.descending));
    const header = h("tr", {}, columns.map(([key, text, , numeric]) => {
      const active = key === sort.key;
      return h("th", { class: numeric ? "num" : null, "aria-sort": active ? (sort.descending ? "descending"
        : "ascending") : "none", dataset: { key } }, h("button", { type: "button", class: "sort", onclick: () => {
        this.sort = { key, descending: active ? !sort.descending : false };
        this.renderTable();
      } }, text, active ? (sort.descending ? " ▼" : " ▲") : ""));
    }));
    const body = rows.map((run) => {
      const best = run.job_id === sweep.best;
      return h("tr", { class: best ? "best" : null, dataset: { jobId: run.job_id, status: run.status,
        diverged: String(run.diverged) } },
      h("td", { class: "num" }, h("span", { class: "swatch", style: `--color: ${colours.get(run.job_id)}` }),
        String(sweep.runs.indexOf(run) + 1)),
      sweep.axes.map((axis) => h("td", { class: "num" }, String(run.params[axis] ?? "–"))),
      h("td", {}, run.status === "deleted" ? statusBadge("deleted") : h("a", { href: `#/jobs/${run.job_id}` },
        statusBadge(run.status)), best ? h("span", { class: "badge badge-best" }, "best") : null,
      run.diverged ? h("span", { class: "badge badge-diverged", title: run.error || "" }, "diverged") : null),
      h("td", { class: "num" }, run.diverged ? "NaN" : number(run.final_loss)),
      h("td", { class: "num" }, percent(run.train_acc)), h("td", { class: "num" }, percent(run.test_acc)),
      h("td", { class: "num" }, `${run.iteration.toLocaleString("en")} / ${run.total.toLocaleString("en")}`),
      h("td", { class: "num" }, duration(run.elapsed_s)));
    });
    this.el.table.replaceChildren(h("table", { class: "sweep-table", id: "sweep-table" }, h("thead", {}, header),
      h("tbody", {}, body)));
  }

  renderActions() {
    const finished = this.sweep.status === "finished";
    const key = `${finished}/${this.confirming}`;
    if (this.el.actions.dataset.key === key) return;
    this.el.actions.dataset.key = key;
    if (finished) {
      this.el.actions.replaceChildren();
      return;
    }
    this.el.actions.replaceChildren(this.confirming ? h("span", { class: "confirm", id: "sweep-cancel-confirm" },
      "Stop every job of the sweep?",
      h("button", { class: "danger", type: "button", id: "sweep-cancel-yes", onclick: () => this.cancel() }, "Stop all"),
      h("button", { class: "secondary", type: "button", onclick: () => this.confirm(false) }, "Keep running"))
      : h("button", { class: "danger", type: "button", id: "sweep-cancel", onclick: () => this.confirm(true) },
        "Cancel sweep"));
  }

  confirm(on) {
    this.confirming = on;
    this.renderActions();
  }

  async cancel() {
    this.confirming = false;
    try {
      this.sweep = await request(`/v1/sweeps/${this.id}/cancel`, { method: "POST" });
      this.render();
    } catch (err) {
      this.el.notice.textContent = `Could not cancel: ${err.message}`;
      this.el.notice.hidden = false;
    }
  }
}

/** "learning_rate=0.1, seed=1": what a run varies. */
function label(run) {
  return Object.entries(run.params).map(([name, value]) => `${name}=${value}`).join(", ");
}

/** Numbers by value, text alphabetically; missing values (null, a diverged loss) last either way. */
function compare(a, b, descending) {
  const missing = (v) => v === null || v === undefined || (typeof v === "number" && !Number.isFinite(v));
  if (missing(a) || missing(b)) return missing(a) - missing(b);
  const order = typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b));
  return descending ? -order : order;
}

function notFound(id) {
  return h("section", { class: "card empty-state" }, h("h1", {}, "Sweep not found"),
    h("p", {}, `There is no sweep ${id}; it may have been deleted.`), h("a", { href: "#/" }, "Back to all jobs"));
}

function failure(err) {
  return h("div", { class: "banner banner-error", role: "alert" }, `Could not show the sweep: ${err.message}`);
}
