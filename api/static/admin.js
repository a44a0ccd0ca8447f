// The admin view (#/admin): every key with its usage, every running and queued job with its owner and
// queue place (each with a Cancel button), and the workers alive with what each works on. Only an admin
// key sees it: the header's "Admin" link appears only for one, and for any other key the page shows a
// notice and fetches nothing else (the service answers 403 to every /v1/admin route anyway).

import { ApiError, request } from "./api.js";
import { duration, h, shortId, statusBadge } from "./format.js";

const POLL_MS = 2000;

/** Show the header's "Admin" link if the key in use is an admin key (asked of /v1/usage). */
export async function showAdminLink() {
  const link = document.getElementById("admin-link")
    || h("a", { id: "admin-link", class: "docs", href: "#/admin", hidden: true }, "Admin");
  if (!link.isConnected) document.getElementById("key-status").before(link);
  link.hidden = true;
  try {
    link.hidden = !(await request("/v1/usage")).admin;
  } catch {
    // no key, or the service away: no link
  }
}

export function renderAdmin(root) {
  const notice = h("div", { class: "banner banner-error", role: "alert", id: "admin-error", hidden: true });
  const keys = h("tbody", { id: "admin-keys" });
  const jobs = h("tbody", { id: "admin-jobs" });
  const workers = h("tbody", { id: "admin-workers" });
  const table = (id, headings, body) => h("div", { class: "table-wrap" }, h("table", { id },
    h("thead", {}, h("tr", {}, headings.map((t) => h("th", {}, t)))), body));
  root.append(h("div", { class: "admin" }, notice,
    h("section", { class: "card" }, h("h2", {}, "Keys"),
      table("admin-keys-table", ["Key", "Admin", "Running", "Queued", "Stored jobs", "CPU hours", "Stored MiB",
        "Last used"], keys)),
    h("section", { class: "card" }, h("h2", {}, "Running and queued jobs"),
      table("admin-jobs-table", ["Job", "Key", "Status", "Queue place", "Progress", "Started / starts in", ""], jobs)),
    h("section", { class: "card" }, h("h2", {}, "Workers"),
      table("admin-workers-table", ["Worker", "Role", "Slots", "Working on"], workers))));

  let timer = null;
  let stopped = false;
  async function refresh() {
    try {
      const [keyPage, running, queued, workerPage] = await Promise.all([request("/v1/admin/keys"),
        request("/v1/admin/jobs?status=running&limit=100"), request("/v1/admin/jobs?status=queued&limit=100"),
        request("/v1/admin/workers")]);
      notice.hidden = true;
      keys.replaceChildren(...keyPage.items.map(keyRow));
      const queue = queued.items.sort((a, b) => (a.queue_position ?? 1e9) - (b.queue_position ?? 1e9));
      jobs.replaceChildren(...[...running.items, ...queue].map((job) => jobRow(job, refresh)));
      workers.replaceChildren(...workerPage.items.map(workerRow));
    } catch (err) {
      notice.hidden = false;
      notice.textContent = err instanceof ApiError && err.status === 403
        ? "This page needs an admin key." : `Could not load the admin view: ${err.message}`;
      if (err instanceof ApiError && err.status === 403) return; // a student: nothing more to fetch
    }
    if (!stopped) timer = setTimeout(refresh, POLL_MS);
  }
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function keyRow(key) {
  const u = key.usage;
  return h("tr", { "data-key": key.name }, h("td", {}, key.name), h("td", {}, key.admin ? "yes" : ""),
    h("td", { class: "num" }, String(u.jobs.running)), h("td", { class: "num" }, String(u.jobs.queued)),
    h("td", { class: "num" }, `${u.stored_jobs} / ${key.limits.stored_jobs}`),
    h("td", { class: "num" }, (u.cpu_seconds / 3600).toFixed(3)),
    h("td", { class: "num" }, `${(u.stored_bytes / 2 ** 20).toFixed(1)} / ${key.limits.stored_mb}`),
    h("td", {}, key.last_used_at ? new Date(key.last_used_at * 1000).toLocaleString() : "-"));
}

function jobRow(job, refresh) {
  const cancel = h("button", { class: "danger", type: "button", "data-cancel": job.id, onclick: async () => {
    cancel.disabled = true;
    try {
      await request(`/v1/jobs/${job.id}/cancel`, { method: "POST" });
    } finally {
      refresh();
    }
  } }, "Cancel");
  const when = job.status === "queued"
    ? (job.estimated_start_s == null ? "-" : `in ${duration(job.estimated_start_s)}`)
    : (job.timings.started_at ? new Date(job.timings.started_at).toLocaleTimeString() : "-");
  return h("tr", { "data-job": job.id }, h("td", {}, h("a", { href: `#/jobs/${job.id}` }, shortId(job.id))),
    h("td", {}, job.key ?? "(revoked)"), h("td", {}, statusBadge(job.status)),
    h("td", { class: "num" }, job.queue_position == null ? "" : String(job.queue_position)),
    h("td", { class: "num" }, `${job.progress.iteration} / ${job.progress.total}`), h("td", {}, when),
    h("td", {}, cancel));
}

function workerRow(worker) {
  return h("tr", {}, h("td", {}, worker.name), h("td", {}, worker.role), h("td", { class: "num" },
    String(worker.slots)), h("td", {}, worker.jobs.length ? worker.jobs.map(shortId).join(", ") : "idle"));
}
