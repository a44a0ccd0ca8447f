// One job's data, kept current: its record and history are fetched once, then its Server-Sent Events stream
// updates the record and adds loss points as they arrive. Events come at most every quarter second, so
// the exact per-iteration history is re-read every REFRESH_MS and after each evaluation.

import { request, streamEvents } from "./api.js";
import { isFinished } from "./format.js";

const REFRESH_MS = 1500;
const RETRY_MS = 1000;
const EVENT_FIELDS = {
  progress: ["iteration", "total", "iterations_per_s", "eta_s", "elapsed_s"],
  latest: ["loss", "train_acc", "test_acc"],
  timings: ["gradient_s", "fanout_overhead_ms"],
};

export class JobFeed {
  /** onChange() is called after every update; onNotice(text) with a problem to show ("" when it is over). */
  constructor(id, signal, { onChange, onNotice }) {
    Object.assign(this, { id, signal, onChange, onNotice });
    this.history = { loss: [], epoch_iters: [], train_acc: [], test_acc: [] };
    this.live = []; // [iteration index, loss] from events, beyond what the history has
    this.historyAsked = 0; // numbers the history requests, so an older answer never replaces a newer one
    this.historyShown = 0;
    this.lastHistoryAt = -Infinity;
  }

  /** The job record (ApiError 404 if there is none) and its history so far. */
  async open() {
    this.job = await this.get("");
    await this.loadHistory();
  }

  /** Follow the job until it ends, then read its final record and history. */
  async run() {
    while (!isFinished(this.job)) await this.follow();
    this.job = await this.get("");
    await this.loadHistory();
  }

  /** Every loss point known: the history's, then those from events not in the history yet. */
  get lossPoints() {
    return this.history.loss.map((y, i) => [i, y]).concat(this.live);
  }

  get(path) {
    return request(`/v1/jobs/${this.id}${path}`, { signal: this.signal });
  }

  /** Read the event stream until it ends; on a dropped connection, wait and re-read the record. */
  async follow() {
    try {
      await streamEvents(`/v1/jobs/${this.id}/events`, (name, data) => this.onEvent(name, data), this.signal);
      this.onNotice("");
    } catch (err) {
      if (err.name === "AbortError") throw err;
      this.onNotice(`Lost the live connection (${err.message}); reconnecting…`);
    }
    if (isFinished(this.job)) return;
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    this.job = await this.get("").catch(() => this.job);
  }

  onEvent(name, data) {
    const before = [this.job.latest.train_acc, this.job.latest.test_acc];
    for (const [part, keys] of Object.entries(EVENT_FIELDS)) {
      for (const key of keys) if (key in data) this.job[part][key] = data[key];
    }
    if (data.error) this.job.error = data.error;
    if (data.status && data.status !== this.job.status) {
      this.job.status = data.status;
      this.reloadRecord(); // a started job now has its worker and block count
    }
    if (name === "progress" && data.iteration > this.history.loss.length) {
      this.live.push([data.iteration - 1, data.loss]);
    }
    const evaluated = this.job.latest.train_acc !== before[0] || this.job.latest.test_acc !== before[1];
    if (evaluated || performance.now() - this.lastHistoryAt > REFRESH_MS) this.loadHistory().catch(() => {});
    this.onChange();
  }

  async reloadRecord() {
    try {
      const job = await this.get("");
      if (job.progress.iteration >= this.job.progress.iteration) this.job = job; // never step backwards
      this.onChange();
    } catch {
      // the events keep the page current; the record is read again when the job ends
    }
  }

  async loadHistory() {
    const asked = ++this.historyAsked;
    this.lastHistoryAt = performance.now();
    try {
      const history = await this.get("/history");
      if (asked < this.historyShown) return;
      this.historyShown = asked;
      this.history = history;
      this.live = this.live.filter(([x]) => x >= history.loss.length);
      this.onChange();
    } catch (err) {
      if (err.name === "AbortError") throw err;
      this.onNotice(`Could not load the history: ${err.message}`);
    }
  }
}
