// The home view: the jobs list (polled while anything is queued or running) and the new-job form.
// Finished jobs can be ticked and compared.

import { ApiError, request } from "./api.js";
import { ago, describe, duration, h, isFinished, percent, progressBar, shortId, statusBadge } from "./format.js";
import { jobForm } from "./form.js";
import { sweepsCard } from "./sweeps.js";

const PAGE_SIZE = 20;
const POLL_BUSY_MS = 1000;
const POLL_IDLE_MS = 5000;
const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];

const selected = new Set(); // job ids ticked for comparison; kept while the user opens jobs
const listState = { offset: 0, status: "" };

export function renderHome(root) {
  const body = h("tbody");
  const table = h("table", { class: "jobs", id: "jobs-table" },
    h("thead", {}, h("tr", {}, h("th", { class: "check", title: "Tick finished jobs to compare them" }, "Compare"),
      h("th", {}, "Job"), h("th", {}, "Status"), h("th", { class: "progress-col" }, "Progress"),
      h("th", {}, "ETA / time"), h("th", { class: "num" }, "Test accuracy"), h("th", {}, "Created"))),
    body);
  const empty = h("div", { class: "empty-state", id: "jobs-empty", hidden: true });
  const error = h("div", { class: "banner banner-error", role: "alert", hidden: true });
  const pager = h("div", { class: "pager" });
  const compare = h("button", { class: "primary", id: "compare-button", type: "button", onclick: () => {
    location.hash = `#/compare/${[...selected].join(",")}`;
  } });
  const filter = h("select", { id: "status-filter", "aria-label": "Show jobs with status", onchange: () => {
    listState.status = filter.value;
    listState.offset = 0;
    refresh();
  } }, h("option", { value: "" }, "All statuses"), STATUSES.map((s) => h("option", { value: s }, s)));
  filter.value = listState.status;

  const sweeps = sweepsCard();
  root.append(h("div", { class: "home" },
    h("div", {}, sweeps.element, h("section", { class: "card jobs-card" },
      h("div", { class: "card-head" }, h("h2", {}, "Jobs"), h("div", { class: "tools" }, filter, compare)),
      error, h("div", { class: "table-wrap" }, table), empty, pager)),
    h("section", { class: "card form-card" }, h("h2", {}, "New training job"),
      jobForm((job) => { location.hash = `#/jobs/${job.id}`; }))));

  const rows = new RowCache();
  let timer = null;
  let stopped = false;
  const updateCompare = () => {
    compare.disabled = selected.size < 2;
    compare.textContent = selected.size ? `Compare ${selected.size} selected` : "Compare";
    compare.title = selected.size < 2 ? "Tick two or more finished jobs to overlay their curves" : "";
  };

  async function refresh() {
    clearTimeout(timer);
    let busy = false;
    try {
      const query = new URLSearchParams({ offset: listState.offset, limit: PAGE_SIZE });
      if (listState.status) query.set("status", listState.status);
      const page = await request(`/v1/jobs?${query}`);
      if (stopped) return;
      error.hidden = true;
      body.replaceChildren(...page.items.map((job) => rows.get(job, updateCompare)));
      showEmpty(empty, table, page.total);
      showPager(pager, page, refresh);
      busy = page.items.some((job) => !isFinished(job));
    } catch (err) {
      if (stopped) return; // the user left the view (or a 401 sent them to the key form)
      if (!(err instanceof ApiError)) throw err;
      error.textContent = `Could not load the jobs: ${err.message}`;
      error.hidden = false;
    }
    updateCompare();
    if (!stopped) timer = setTimeout(refresh, busy ? POLL_BUSY_MS : POLL_IDLE_MS);
  }

  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
    sweeps.stop();
  };
}

/** Rows of unchanged jobs are reused between polls, so focus and hover survive a refresh. */
class RowCache {
  constructor() {
    this.rows = new Map();
  }

  get(job, onSelect) {
    const key = JSON.stringify(job) + ago(job.timings.created_at); // "2 min ago" changes too
    const cached = this.rows.get(job.id);
    if (cached?.key === key) return cached.tr;
    const tr = row(job, onSelect);
    this.rows.set(job.id, { key, tr });
    return tr;
  }
}

function row(job, onSelect) {
  const finished = isFinished(job);
  const box = h("input", { type: "checkbox", "aria-label": `Compare job ${shortId(job.id)}`,
    disabled: !finished || !job.progress.iteration,
    title: finished ? "Tick to compare" : "Only finished jobs can be compared",
    onchange: (event) => {
      if (event.target.checked) selected.add(job.id);
      else selected.delete(job.id);
      onSelect();
    } });
  box.checked = selected.has(job.id);
  const { progress, latest } = job;
  const timing = job.status === "running" ? (progress.eta_s != null ? `${duration(progress.eta_s)} left` : "starting")
    : finished ? duration(progress.elapsed_s) : "waiting";
  return h("tr", { dataset: { jobId: job.id, status: job.status } },
    h("td", { class: "check" }, box),
    h("td", {}, h("a", { href: `#/jobs/${job.id}`, class: "job-link" }, shortId(job.id)),
      h("div", { class: "muted small" }, describe(job.spec))),
    h("td", {}, statusBadge(job.status), job.error ? h("div", { class: "error-text small", title: job.error },
      job.error) : null),
    h("td", { class: "progress-col" }, progressBar(progress, job.status),
      h("div", { class: "muted small" }, `${progress.iteration.toLocaleString("en")} / ` +
        `${progress.total.toLocaleString("en")}`)),
    h("td", { class: "small" }, timing),
    h("td", { class: `num ${finished ? "" : "muted"}`, title: finished ? "" : "latest evaluation" },
      percent(latest.test_acc)),
    h("td", { class: "muted small", title: job.timings.created_at }, ago(job.timings.created_at)));
}

function showEmpty(empty, table, total) {
  table.hidden = total === 0;
  empty.hidden = total !== 0;
  empty.replaceChildren(
    h("p", { class: "empty-title" }, listState.status ? `No ${listState.status} jobs.` : "No jobs yet."),
    h("p", { class: "muted" }, listState.status ? "Choose “All statuses” to see the others."
      : "Start one with the form: the defaults train the book's network on MNIST."));
}

function showPager(pager, page, refresh) {
  if (page.total <= page.limit) {
    pager.replaceChildren();
    return;
  }
  const last = Math.min(page.offset + page.items.length, page.total);
  const go = (offset) => () => {
    listState.offset = Math.max(0, offset);
    refresh();
  };
  pager.replaceChildren(
    h("span", { class: "muted" }, `${page.offset + 1}–${last} of ${page.total}`),
    h("button", { class: "secondary", type: "button", disabled: page.offset === 0, onclick: go(page.offset -
      page.limit) }, "Newer"),
    h("button", { class: "secondary", type: "button", disabled: last >= page.total, onclick: go(page.offset +
      page.limit) }, "Older"));
}
