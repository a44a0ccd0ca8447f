// Talking to the service: the API key, JSON requests, binary downloads and the Server-Sent Events stream.
// Every /v1 request carries `Authorization: Bearer <key>`. That is why images and downloads are fetched
// as blobs and the event stream is read with fetch() instead of EventSource (which cannot send headers).

const KEY_STORAGE = "zdl.apiKey";

export const apiKey = {
  get: () => localStorage.getItem(KEY_STORAGE) || "",
  set: (key) => localStorage.setItem(KEY_STORAGE, key),
  clear: () => localStorage.removeItem(KEY_STORAGE),
};

/** An HTTP error with the API's one-line `detail` and, for a 422, its per-field `errors`. */
export class ApiError extends Error {
  constructor(status, detail, errors = []) {
    super(detail);
    this.status = status;
    this.errors = errors;
  }
}

let onUnauthorized = () => {};
/** Called with the ApiError whenever the service answers 401 (a missing or wrong key). */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${apiKey.get()}`, ...extra };
}

async function send(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: headers(options.headers) });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "Cannot reach the service. Is it running? (" + err.message + ")");
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response) {
  let detail = `${response.status} ${response.statusText}`;
  let errors = [];
  try {
    const body = await response.json();
    if (typeof body.detail === "string") detail = body.detail;
    if (Array.isArray(body.errors)) errors = body.errors;
  } catch {
    // not JSON (a proxy's error page, say): the status line is all there is
  }
  const error = new ApiError(response.status, detail, errors);
  if (response.status === 401) onUnauthorized(error);
  return error;
}

/** GET (or other method with a JSON `body`) and parse the JSON answer; throws ApiError. */
export async function request(path, { method = "GET", body, signal, extraHeaders = {} } = {}) {
  const options = { method, signal, headers: { Accept: "application/json", ...extraHeaders } };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["Content-Type"] = "application/json";
  }
  const response = await send(path, options);
  return response.status === 204 ? null : response.json();
}

/** The response body as a Blob (images, .npz), sent with the key like every other request. */
export async function fetchBlob(path, signal) {
  return (await send(path, { signal })).blob();
}

/** Save `blob` as a file named `filename` through the browser's download mechanism. */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * Read a Server-Sent Events stream until the server ends it or `signal` aborts it.
 * Calls onEvent(name, data) with the JSON data of each event; comments (keep-alive pings) are skipped.
 */
export async function streamEvents(path, onEvent, signal) {
  const response = await send(path, { signal, headers: { Accept: "text/event-stream" } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new EventParser(onEvent);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    parser.push(value);
  }
}

/** The text/event-stream format: `field: value` lines, an event ends at a blank line. */
class EventParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.name = "message";
    this.data = [];
  }

  push(text) {
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop(); // an unfinished line waits for the next chunk
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.onEvent(this.name, JSON.parse(this.data.join("\n")));
      this.reset();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") this.name = value;
    else if (field === "data") this.data.push(value);
  }
}
