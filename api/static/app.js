// The dashboard's entry point: asks for the API key, shows the service's readiness, and switches between
// the views by the URL's #fragment, so the browser's back button and bookmarks work:
//   #/                    jobs list and the new-job form      (home.js)
//   #/jobs/<id>           one job, live                        (job.js)
//   #/compare/<id>,<id>   two or more jobs' curves overlaid    (compare.js)
//   #/sweeps/<id>         a sweep: every run overlaid, a table (sweep.js)
//   #/admin               keys, everyone's jobs, workers       (admin.js; admin keys only)

import { renderAdmin, showAdminLink } from "./admin.js";
import { apiKey, setUnauthorizedHandler } from "./api.js";
import { renderCompare } from "./compare.js";
import { h } from "./format.js";
import { renderHome } from "./home.js";
import { renderJob } from "./job.js";
import { renderSweep } from "./sweep.js";

const ROUTES = [
  [/^#?\/?$/, () => renderHome],
  [/^#\/jobs\/([\w-]+)$/, (id) => (root) => renderJob(root, id)],
  [/^#\/compare\/([\w,-]+)$/, (ids) => (root) => renderCompare(root, ids.split(",").filter(Boolean))],
  [/^#\/sweeps\/([\w-]+)$/, (id) => (root) => renderSweep(root, id)],
  [/^#\/admin$/, () => renderAdmin],
];
const READY_POLL_MS = 10_000;

const root = document.getElementById("view");
let leaveView = () => {};

function route(message = "") {
  leaveView();
  leaveView = () => {};
  root.replaceChildren();
  showKey();
  if (!apiKey.get()) {
    renderKeyGate(root, message);
    return;
  }
  showAdminLink();
  const match = ROUTES.map(([pattern, view]) => [location.hash.match(pattern), view]).find(([m]) => m);
  if (!match) {
    root.append(h("section", { class: "card empty-state" }, h("h1", {}, "Page not found"),
      h("p", {}, "There is nothing at this address. "), h("a", { href: "#/" }, "Go to the jobs list")));
    return;
  }
  const [found, view] = match;
  leaveView = view(...found.slice(1))(root) || (() => {});
  window.scrollTo(0, 0);
}

function renderKeyGate(root, message) {
  const input = h("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "off",
    placeholder: "your API key", required: true, "aria-describedby": "api-key-help" });
  const error = h("p", { class: "field-error", id: "api-key-error", role: "alert" }, message);
  const form = h("form", { class: "card key-gate", id: "key-form", novalidate: true },
    h("h1", {}, "Welcome to the zdl training dashboard"),
    h("p", { class: "lead" }, "Train the two-layer network of ", h("cite", {}, "Deep Learning from Scratch"),
      ", chapter 4, on this service's workers, watch its loss fall live, compare runs and see what it learned."),
    h("label", { for: "api-key" }, "API key"),
    input,
    h("p", { class: "hint", id: "api-key-help" }, "Sent with every request as ",
      h("code", {}, "Authorization: Bearer <key>"), " and kept only in this browser. ",
      "Your jobs are visible only with the key that created them. ",
      "Running the service yourself? ", h("code", {}, "zdl cluster up"),
      " says where it saved its key (or set your own in ", h("code", {}, "ZDL_API_KEYS"), ")."),
    error,
    h("button", { class: "primary", type: "submit" }, "Continue"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      error.textContent = "Enter a key to continue.";
      input.focus();
      return;
    }
    apiKey.set(key);
    route();
  });
  input.value = apiKey.get();
  root.append(form);
  input.focus();
}

function showKey() {
  const box = document.getElementById("key-status");
  const key = apiKey.get();
  box.hidden = !key;
  box.replaceChildren(h("span", { class: "muted" }, "API key "), h("code", {}, `••••${key.slice(-4)}`),
    h("button", { class: "link", type: "button", id: "change-key", onclick: () => {
      apiKey.clear();
      route();
    } }, "Change"));
}

/** The header's readiness dot: is Redis up and does each queue have a worker? */
async function pollReadiness() {
  const box = document.getElementById("service-status");
  let state = "down";
  let text = "Service unreachable";
  try {
    const response = await fetch("/readyz", { headers: { Accept: "application/json" } });
    const report = await response.json();
    const blocks = Object.entries(report.workers || {}).filter(([queue]) => queue.includes("block"));
    const count = blocks.length ? blocks[0][1] : 0;
    state = response.ok ? "ready" : "degraded";
    text = response.ok ? `Ready · ${count} block worker${count === 1 ? "" : "s"}` : `Not ready: ${report.detail ||
      report.redis}`;
  } catch {
    // keep "unreachable"
  }
  box.className = `service service-${state}`;
  box.replaceChildren(h("span", { class: "dot" }), text);
  setTimeout(pollReadiness, READY_POLL_MS);
}

setUnauthorizedHandler(() => {
  apiKey.clear();
  route("The service rejected this API key (401). Enter another one.");
});
window.addEventListener("hashchange", () => route());
route();
pollReadiness();
