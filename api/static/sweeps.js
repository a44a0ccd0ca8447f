// The home view's list of sweeps: each links to its view (sweep.js). Hidden while the key has none; polled
// faster while one of them runs.

import { ApiError, request } from "./api.js";
import { ago, h, percent, shortId, statusBadge } from "./format.js";

const POLL_BUSY_MS = 2000;
const POLL_IDLE_MS = 10000;

/** { element, stop }: the card, and a function that stops its polling (the view is left). */
export function sweepsCard() {
  const body = h("tbody");
  const error = h("div", { class: "banner banner-error", role: "alert", hidden: true });
  const element = h("section", { class: "card", id: "sweeps-card", hidden: true },
    h("div", { class: "card-head" }, h("h2", {}, "Sweeps")), error,
    h("div", { class: "table-wrap" }, h("table", { class: "jobs", id: "sweeps-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Sweep"), h("th", {}, "Varies"), h("th", {}, "Status"),
        h("th", {}, "Jobs"), h("th", { class: "num" }, "Best test accuracy"), h("th", {}, "Created"))), body)),
    h("p", { class: "hint" }, "Start one with ", h("code", {}, "zdl sweep"), ", ", h("code", {}, "client.sweep(...)"),
      " (zdl.client) or POST /v1/sweeps."));
  let timer = null;
  let stopped = false;

  async function refresh() {
    let busy = false;
    try {
      const page = await request("/v1/sweeps?limit=10");
      if (stopped) return;
      error.hidden = true;
      element.hidden = page.total === 0;
      body.replaceChildren(...page.items.map(row));
      busy = page.items.some((sweep) => sweep.status !== "finished");
    } catch (err) {
      if (stopped) return;
      if (!(err instanceof ApiError)) throw err;
      error.textContent = `Could not load the sweeps: ${err.message}`;
      error.hidden = false;
    }
    if (!stopped) timer = setTimeout(refresh, busy ? POLL_BUSY_MS : POLL_IDLE_MS);
  }

  refresh();
  return { element, stop: () => { stopped = true; clearTimeout(timer); } };
}

function row(sweep) {
  const best = sweep.runs.find((run) => run.job_id === sweep.best);
  const ended = sweep.size - sweep.counts.queued - sweep.counts.running;
  return h("tr", { dataset: { sweepId: sweep.id, status: sweep.status } },
    h("td", {}, h("a", { href: `#/sweeps/${sweep.id}`, class: "job-link" }, sweep.name || shortId(sweep.id))),
    h("td", { class: "small" }, sweep.axes.join(" × ")),
    h("td", {}, statusBadge(sweep.status)),
    h("td", { class: "small" }, `${ended} of ${sweep.size} ended`),
    h("td", { class: "num" }, percent(best?.test_acc)),
    h("td", { class: "muted small", title: sweep.created_at }, ago(sweep.created_at)));
}
