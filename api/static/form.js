// The new-job form: the book's defaults, a hint under each field, and the API's 422 messages shown next to
// the field they are about. Inputs are named by the API's field paths ("training.iters"), which are also
// the `field` of each validation error, so an error finds its input by name.

import { ApiError, request } from "./api.js";
import { h } from "./format.js";

/** The book's run (section 4.5): 784-50-10, 10,000 iterations of 100 images, learning rate 0.1. */
const BOOK_RUN = {
  model: { hidden_size: 50, weight_init_std: 0.01 },
  dataset: "mnist",
  training: { iters: 10000, batch_size: 100, learning_rate: 0.1, seed: 0 },
  gradient: { method: "numerical", blocks: "auto" },
};

const SECTIONS = [
  ["Network", [
    { name: "model.hidden_size", label: "Hidden units", kind: "int", hint: "Neurons in the hidden layer (book: 50)." },
    { name: "model.weight_init_std", label: "Initial weight scale", kind: "float",
      hint: "Standard deviation of the random initial weights (book: 0.01)." },
    { name: "dataset", label: "Dataset", kind: "select", hint: "28×28 grey images in 10 classes.",
      options: [["mnist", "MNIST (handwritten digits)"], ["fashion-mnist", "Fashion-MNIST (clothing)"]] },
  ]],
  ["Training", [
    { name: "training.iters", label: "Iterations", kind: "int", hint: "Mini-batch steps (book: 10,000)." },
    { name: "training.batch_size", label: "Batch size", kind: "int", hint: "Images per step (book: 100)." },
    { name: "training.learning_rate", label: "Learning rate", kind: "float", hint: "SGD step size (book: 0.1)." },
    { name: "training.seed", label: "Seed", kind: "int",
      hint: "Same seed and settings give bit-identical weights." },
  ]],
  ["Gradient", [
    { name: "gradient.method", label: "Method", kind: "select", hint: "How each step's gradient is computed.",
      options: [["numerical", "numerical: fast exact engine"], ["numerical-reference", "numerical-reference: the " +
        "book's procedure (slow)"], ["backprop", "backprop: analytic (chapter 5)"]] },
    { name: "gradient.blocks", label: "Blocks per step", kind: "blocks",
      hint: "Parameter blocks sent to workers each step: auto (one per worker) or a number." },
  ]],
];

let draft = structuredClone(BOOK_RUN); // what the form showed last, kept while the user looks at a job

/** Fill the form with `spec` the next time it is shown ("train again with these settings"). */
export function setDraft(spec) {
  draft = structuredClone(spec);
}

const get = (spec, path) => path.split(".").reduce((obj, key) => obj?.[key], spec);

function set(spec, path, value) {
  const keys = path.split(".");
  const last = keys.pop();
  keys.reduce((obj, key) => (obj[key] ??= {}), spec)[last] = value;
}

function input(field) {
  const id = `f-${field.name.replace(".", "-")}`;
  const common = { id, name: field.name, "aria-describedby": `${id}-hint ${id}-error` };
  if (field.kind === "select") {
    return h("select", common, field.options.map(([value, text]) => h("option", { value }, text)));
  }
  const numeric = field.kind === "int" || field.kind === "float";
  return h("input", { ...common, type: "text", inputmode: numeric ? (field.kind === "int" ? "numeric" : "decimal")
    : "text", autocomplete: "off", spellcheck: "false" });
}

/** What a field's text means as JSON: numbers as numbers, anything else as typed (the API says what is wrong). */
function parse(field, text) {
  const raw = text.trim();
  if (field.kind === "select") return raw;
  if (field.kind === "blocks" && !/^\d+$/.test(raw)) return raw;
  if (raw === "") return null;
  const value = Number(raw);
  return Number.isNaN(value) ? raw : value;
}

/** The form; onCreated(job) is called with the 201 body. */
export function jobForm(onCreated) {
  const fields = SECTIONS.flatMap(([, list]) => list);
  const banner = h("div", { class: "banner banner-error", role: "alert", hidden: true });
  const submit = h("button", { class: "primary", type: "submit" }, "Start training");
  const form = h("form", { class: "job-form", id: "job-form", novalidate: true },
    h("p", { class: "hint" }, "The defaults are the book's run: 784-50-10, 10,000 iterations of 100 images. ",
      "Try fewer iterations for a quick look."),
    SECTIONS.map(([title, list]) => h("fieldset", {}, h("legend", {}, title), list.map((field) => {
      const control = input(field);
      return h("div", { class: "field", dataset: { field: field.name } },
        h("label", { for: control.id }, field.label), control,
        h("p", { class: "hint", id: `${control.id}-hint` }, field.hint),
        h("p", { class: "field-error", id: `${control.id}-error`, role: "alert" }));
    }))),
    banner,
    h("div", { class: "actions" }, submit,
      h("button", { type: "button", class: "secondary", onclick: () => fill(BOOK_RUN) }, "Book's defaults")));

  const control = (name) => form.elements.namedItem(name);
  const fill = (spec) => {
    for (const field of fields) control(field.name).value = String(get(spec, field.name) ?? "");
    showErrors([]);
  };
  const read = () => {
    const spec = {};
    for (const field of fields) set(spec, field.name, parse(field, control(field.name).value));
    return spec;
  };
  const showErrors = (errors, detail = "") => {
    form.querySelectorAll(".field").forEach((el) => {
      el.classList.remove("invalid");
      el.querySelector(".field-error").textContent = "";
    });
    const unplaced = [];
    for (const error of errors) {
      const el = form.querySelector(`.field[data-field="${CSS.escape(error.field)}"]`);
      if (!el) {
        unplaced.push(`${error.field}: ${error.message}`);
        continue;
      }
      el.classList.add("invalid");
      el.querySelector(".field-error").textContent = error.message.replace(/^Value error, (.)/, (_, c) =>
        c.toUpperCase());
    }
    const text = errors.length ? ["Please fix the fields marked in red.", ...unplaced].join(" ") : detail;
    banner.textContent = text;
    banner.hidden = !text;
    form.querySelector(".field.invalid input, .field.invalid select")?.focus();
  };

  form.addEventListener("input", () => {
    draft = read();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    draft = read();
    submit.disabled = true;
    submit.textContent = "Submitting…";
    try {
      const job = await request("/v1/jobs", { method: "POST", body: draft,
        extraHeaders: { "Idempotency-Key": newKey() } });
      showErrors([]);
      onCreated(job);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showErrors(err.status === 422 ? err.errors : [], err.message);
    } finally {
      submit.disabled = false;
      submit.textContent = "Start training";
    }
  });
  fill(draft);
  return form;
}

function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}
