// Small helpers shared by the views: building DOM nodes and writing numbers for people.

/** h("div", {class: "x", onclick: f}, "text", child) -> an element; null/false children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style") el.style.cssText = value; // through the CSSOM: the page's CSP allows no inline styles
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const FINISHED = ["succeeded", "failed", "cancelled"];
export const isFinished = (job) => FINISHED.includes(job.status);

export const shortId = (id) => id.slice(0, 8);

export function percent(value, digits = 1) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(digits)} %`;
}

export function number(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const text = Number(value).toPrecision(digits);
  return text.includes(".") && !text.includes("e") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
}

export function rate(itersPerS) {
  if (!itersPerS) return "–";
  return itersPerS >= 100 ? `${Math.round(itersPerS)} it/s` : `${itersPerS.toFixed(1)} it/s`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function ago(iso) {
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

/** "784-50-10 · numerical · 10,000 iters" : what a job trains, in one line. */
export function describe(spec) {
  const input = spec.model.input_size ?? 784;
  const output = spec.model.output_size ?? 10;
  return `${spec.dataset} · ${input}-${spec.model.hidden_size}-${output} · ${spec.gradient.method} · ` +
    `${spec.training.iters.toLocaleString("en")} iters`;
}

export function statusBadge(status) {
  return h("span", { class: `badge badge-${status}` }, status);
}

/** A progress bar for a job: iterations done of total. */
export function progressBar(progress, status) {
  const fraction = progress.total ? progress.iteration / progress.total : 0;
  return h("div", { class: `progress progress-${status}`, role: "progressbar", "aria-valuemin": 0,
    "aria-valuemax": progress.total, "aria-valuenow": progress.iteration },
  h("div", { class: "progress-fill", style: `width: ${(100 * fraction).toFixed(1)}%` }));
}
