// One job's page: progress and numbers, the live loss and accuracy curves, what the hidden units learned,
// settings, downloads and a cancel button. The data and its live updates come from a JobFeed (live.js).

import { ApiError, fetchBlob, request, saveBlob } from "./api.js";
import { COLORS, LineChart, legend } from "./chart.js";
import { describe, duration, h, isFinished, number, percent, progressBar, rate, shortId, statusBadge }
  from "./format.js";
import { setDraft } from "./form.js";
import { JobFeed } from "./live.js";

const MAX_WEIGHT_IMAGES = 100; // api/routes/plots.py draws at most this many hidden units

export function renderJob(root, id) {
  const controller = new AbortController();
  const view = new JobView(root, id, controller.signal);
  view.start().catch((err) => {
    if (err.name !== "AbortError" && !controller.signal.aborted) view.fatal(err);
  });
  return () => {
    controller.abort();
    view.destroy();
  };
}

class JobView {
  constructor(root, id, signal) {
    Object.assign(this, { root, id, signal });
    this.feed = new JobFeed(id, signal, { onChange: () => this.redraw(), onNotice: (text) => this.notice(text) });
    this.urls = [];
  }

  get job() {
    return this.feed.job;
  }

  async start() {
    try {
      await this.feed.open();
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return this.notFound();
      throw err;
    }
    this.build();
    await this.feed.run();
    this.redraw();
    this.renderWeightsPlaceholder();
    if (this.job.status === "succeeded") await this.showWeights();
  }

  redraw() {
    if (this.frame || !this.el) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = null;
      this.renderSummary();
      this.renderCharts();
    });
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.lossChart?.destroy();
    this.accuracyChart?.destroy();
    this.urls.forEach((url) => URL.revokeObjectURL(url));
  }

  // --- building and updating the page -----------------------------------------------------------------

  build() {
    const job = this.job;
    this.el = {
      badge: h("span"), actions: h("div", { class: "actions" }), notice: h("div", { class: "banner", hidden: true }),
      error: h("div", { class: "banner banner-error", id: "job-error", role: "alert", hidden: true }),
      progress: h("div", { class: "job-progress" }), stats: h("dl", { class: "stats", id: "job-stats" }),
      engine: h("dl", { class: "stats stats-small", id: "job-engine" }),
      loss: h("canvas", { class: "chart", id: "loss-chart", role: "img", "aria-label": "loss per iteration" }),
      accuracy: h("canvas", { class: "chart", id: "accuracy-chart", role: "img",
        "aria-label": "train and test accuracy per epoch" }),
      weights: h("div", { class: "weights", id: "weights-panel" }), downloads: h("div", { class: "downloads" }),
    };
    this.root.append(h("div", { class: "job-view", id: "job-view", dataset: { jobId: job.id } },
      h("a", { href: "#/", class: "back" }, "← All jobs"),
      h("div", { class: "job-head" },
        h("div", {}, h("h1", {}, `Job ${shortId(job.id)} `, this.el.badge),
          h("p", { class: "muted" }, describe(job.spec), " · ", h("code", { class: "small" }, job.id))),
        this.el.actions),
      this.el.notice, this.el.error,
      h("section", { class: "card" }, this.el.progress, this.el.stats, this.el.engine),
      h("div", { class: "charts" },
        h("section", { class: "card" }, h("h2", {}, "Loss per iteration"),
          h("p", { class: "hint" }, "Cross-entropy of each mini-batch after its update (the book's figure 4-11)."),
          this.el.loss),
        h("section", { class: "card" }, h("h2", {}, "Accuracy per epoch"),
          legend([{ label: "train", color: COLORS[0] }, { label: "test", color: COLORS[1], dashed: true }]),
          this.el.accuracy)),
      h("div", { class: "charts" },
        h("section", { class: "card" }, h("h2", {}, "What the hidden units look for"),
          h("p", { class: "hint" }, "Each square is one hidden unit's 784 incoming weights laid out as the 28×28 ",
            "image they multiply: red pixels raise the unit's input, blue ones lower it."), this.el.weights),
        h("section", { class: "card" }, h("h2", {}, "Settings and downloads"), specTable(job.spec),
          this.el.downloads))));
    this.lossChart = new LineChart(this.el.loss, { xLabel: "iteration", yLabel: "loss", integerX: true });
    this.accuracyChart = new LineChart(this.el.accuracy, { xLabel: "epoch", yLabel: "accuracy", yRange: [0, 1],
      integerX: true });
    this.renderSummary();
    this.renderCharts();
    this.renderWeightsPlaceholder();
  }

  renderSummary() {
    const { job, el } = this;
    const { progress, latest, timings } = job;
    this.root.querySelector("#job-view").dataset.status = job.status;
    el.badge.replaceChildren(statusBadge(job.status));
    el.badge.id = "job-status";
    el.error.hidden = !job.error;
    el.error.textContent = job.error ? `The job failed: ${job.error}` : "";
    const fraction = progress.total ? progress.iteration / progress.total : 0;
    el.progress.replaceChildren(progressBar(progress, job.status), h("p", { class: "muted" },
      `Iteration ${progress.iteration.toLocaleString("en")} of ${progress.total.toLocaleString("en")} ` +
      `(${(100 * fraction).toFixed(0)} %)`));
    const eta = { running: duration(progress.eta_s), queued: "waiting for a worker", succeeded: "done" }[job.status]
      ?? "–";
    el.stats.replaceChildren(...stats([
      ["Speed", rate(progress.iterations_per_s), "stat-rate"], ["Time left", eta, "stat-eta"],
      ["Elapsed", duration(progress.elapsed_s), "stat-elapsed"], ["Latest loss", number(latest.loss), "stat-loss"],
      ["Train accuracy", percent(latest.train_acc), "stat-train"], ["Test accuracy", percent(latest.test_acc),
        "stat-test"]]));
    const perIteration = progress.iteration && timings.gradient_s != null ? timings.gradient_s / progress.iteration
      : null;
    el.engine.replaceChildren(...stats([
      ["Gradient blocks per step", job.blocks == null ? "–" : job.blocks === 0 ? "none (backprop, in the coordinator)"
        : String(job.blocks), "stat-blocks"],
      ["Gradient time per iteration", duration(perIteration), "stat-gradient"],
      ["Fan-out overhead per iteration", timings.fanout_overhead_ms == null ? "–"
        : `${timings.fanout_overhead_ms.toFixed(2)} ms`, "stat-overhead"],
      ["Coordinator", job.worker || "–", "stat-worker"]]));
    this.renderActions();
    this.renderDownloads();
  }

  renderCharts() {
    const { job } = this;
    const { history } = this.feed;
    const loss = this.feed.lossPoints;
    const waiting = job.status === "queued" ? "Waiting for a worker to start the job…" : isFinished(job)
      ? "No iterations were recorded." : "Waiting for the first iteration…";
    this.lossChart.update([{ label: "loss", color: COLORS[0], points: loss, width: 1.2 }], waiting);
    const epochs = (values) => values.map((y, i) => [i, y]);
    this.accuracyChart.update([
      { label: "train", color: COLORS[0], points: epochs(history.train_acc), markers: true },
      { label: "test", color: COLORS[1], points: epochs(history.test_acc), markers: true, dashed: true },
    ], isFinished(job) ? "The job ended before its first evaluation." : "Accuracy is measured once per epoch…");
  }

  renderActions() {
    const { job, el } = this;
    const again = h("button", { class: "secondary", type: "button", id: "train-again", onclick: () => {
      setDraft(job.spec);
      location.hash = "#/";
    } }, "Train again with these settings");
    const buttons = [again];
    if (!isFinished(job)) {
      buttons.unshift(this.confirming ? h("span", { class: "confirm", id: "cancel-confirm" },
        "Stop training for good?",
        h("button", { class: "danger", type: "button", id: "cancel-yes", onclick: () => this.cancel() }, "Stop job"),
        h("button", { class: "secondary", type: "button", onclick: () => this.confirm(false) }, "Keep running"))
        : h("button", { class: "danger", type: "button", id: "cancel-button", onclick: () => this.confirm(true) },
          "Cancel job"));
    }
    const key = `${job.status}/${this.confirming}`;
    if (el.actions.dataset.key === key) return; // unchanged: keep the buttons (and their focus)
    el.actions.dataset.key = key;
    el.actions.replaceChildren(...buttons);
  }

  confirm(on) {
    this.confirming = on;
    this.renderActions();
  }

  async cancel() {
    this.confirming = false;
    try {
      this.feed.job = await request(`/v1/jobs/${this.id}/cancel`, { method: "POST" });
      this.notice(this.job.status === "cancelled" ? "" : "Cancelling: the job stops after its current iteration.");
    } catch (err) {
      this.notice(`Could not cancel: ${err.message}`);
    }
    this.redraw();
  }

  renderDownloads() {
    const { job, el } = this;
    const base = `/v1/jobs/${job.id}`;
    const hasLoss = job.progress.iteration > 0;
    const items = [
      ["download-weights", "Weights (.npz)", `${base}/weights`, `${job.id}-weights.npz`, job.status === "succeeded",
        "Weights exist once the job has succeeded"],
      ["download-history", "History (JSON)", `${base}/history`, `${job.id}-history.json`, true, ""],
      ["download-loss", "Loss plot (PNG)", `${base}/plots/loss.png`, `${job.id}-loss.png`, hasLoss, "No loss yet"],
      ["download-accuracy", "Accuracy plot (PNG)", `${base}/plots/accuracy.png`, `${job.id}-accuracy.png`,
        this.feed.history.train_acc.length > 0, "No evaluation yet"],
      ["download-weights-png", "Weights picture (PNG)", `${base}/plots/weights.png`, `${job.id}-weights.png`,
        job.status === "succeeded", "The picture exists once the job has succeeded"],
    ];
    const key = items.map((item) => item[4]).join();
    if (el.downloads.dataset.key === key) return;
    el.downloads.dataset.key = key;
    el.downloads.replaceChildren(h("h3", {}, "Download"), h("div", { class: "download-list" },
      items.map(([id, label, path, filename, ready, why]) => h("button", { class: "secondary", type: "button", id,
        disabled: !ready, title: ready ? `Save ${filename}` : why, onclick: () => this.download(path, filename) },
      label))));
  }

  async download(path, filename) {
    try {
      saveBlob(await fetchBlob(path, this.signal), filename);
    } catch (err) {
      if (err.name !== "AbortError") this.notice(`Download failed: ${err.message}`);
    }
  }

  renderWeightsPlaceholder() {
    const text = { succeeded: "Loading…", failed: "The job failed, so it has no trained weights.",
      cancelled: "The job was cancelled, so it has no trained weights." }[this.job.status]
      ?? "The weights are shown when the job succeeds.";
    this.el.weights.replaceChildren(h("p", { class: "empty-state muted" }, text));
  }

  async showWeights() {
    try {
      const url = URL.createObjectURL(await fetchBlob(`/v1/jobs/${this.id}/plots/weights.png`, this.signal));
      this.urls.push(url);
      const hidden = this.job.spec.model.hidden_size;
      this.el.weights.replaceChildren(h("img", { src: url, id: "weights-image", width: 640, height: 480,
        alt: `First-layer weights of ${Math.min(hidden, MAX_WEIGHT_IMAGES)} hidden units as 28×28 images` }),
      ...(hidden > MAX_WEIGHT_IMAGES ? [h("p", { class: "hint" }, `The first ${MAX_WEIGHT_IMAGES} of ${hidden} units.`)]
        : []));
    } catch (err) {
      if (err.name === "AbortError") throw err;
      this.el.weights.replaceChildren(h("p", { class: "error-text" }, `Could not draw the weights: ${err.message}`));
    }
  }

  notice(text) {
    if (!this.el) return;
    this.el.notice.textContent = text;
    this.el.notice.hidden = !text;
  }

  notFound() {
    this.root.append(h("section", { class: "card empty-state" }, h("h1", {}, "Job not found"),
      h("p", {}, `There is no job ${this.id}; it may have been deleted.`), h("a", { href: "#/" }, "Back to all jobs")));
  }

  fatal(err) {
    this.root.append(h("div", { class: "banner banner-error", role: "alert" }, `Could not show the job: ${err.message}`));
  }
}

function stats(items) {
  return items.map(([label, value, id]) => h("div", { class: "stat" }, h("dt", {}, label), h("dd", { id }, value)));
}

function specTable(spec) {
  const rows = [["Dataset", spec.dataset], ["Hidden units", spec.model.hidden_size],
    ["Initial weight scale", spec.model.weight_init_std], ["Iterations", spec.training.iters.toLocaleString("en")],
    ["Batch size", spec.training.batch_size], ["Learning rate", spec.training.learning_rate],
    ["Seed", spec.training.seed], ["Gradient", spec.gradient.method], ["Blocks", spec.gradient.blocks]];
  return h("table", { class: "spec" }, h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k),
    h("td", {}, String(v))))));
}
