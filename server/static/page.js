// The bertsearch search page: plain JavaScript, no dependencies, nothing fetched but this
// server's own /search and /stats. Every text that comes from the API (passages are user data)
// is inserted as text nodes, never parsed as HTML.
"use strict";

const KEY_STORE = "bertsearch.apiKey";
const DEFAULTS = { q: "", mode: "hybrid", k: "10", path: "", meta: "", coh: "1", order: "" };
const $ = (selector) => document.querySelector(selector);

let searchSeq = 0; // only the latest search may render
let shown = null; // {data, state} of the results on screen

/** An element with attributes and children (strings become text nodes, never HTML). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

// ---- talking to the API ------------------------------------------------------------------

class ApiError extends Error {
  /** `key`: the API key the request was sent with (null: none), to tell "missing" from
   * "wrong" on a 401. */
  constructor(status, message, key = null) {
    super(message);
    this.status = status;
    this.key = key;
  }
}

/** GET (no body) or POST `body` as JSON to `path`; the JSON answer, or throws ApiError. */
async function api(path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, {
      method: body === undefined ? "GET" : "POST",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, `Could not reach the server (${err.message}). Is it still running?`);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, detailOf(response, data), key);
  return data;
}

/** The readable part of an error answer: a string `detail`, or pydantic's list of problems. */
function detailOf(response, data) {
  const detail = data && data.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      const where = (d.loc || []).filter((part) => part !== "body").join(".");
      return where ? `${where}: ${d.msg}` : String(d.msg);
    }).join("; ");
  }
  return `${response.status} ${response.statusText || "error"}`;
}

const ERROR_TITLES = {
  0: "Network error",
  401: "API key needed",
  413: "Request too large",
  422: "The search was not accepted",
  503: "The index is not ready",
};

function showError(err) {
  const box = $("#error");
  const title = ERROR_TITLES[err.status] || (err.status ? `Error ${err.status}` : "Error");
  box.replaceChildren(el("strong", {}, `${title}: `), err.message);
  box.hidden = false;
}

function clearError() {
  $("#error").hidden = true;
}

// ---- the API key ---------------------------------------------------------------------------

/** Ask for the key after a 401; the key that request was sent with was wrong: drop it. */
function askForKey(err) {
  if (err.key && sessionStorage.getItem(KEY_STORE) === err.key) {
    sessionStorage.removeItem(KEY_STORE);
  }
  showKeyStatus();
  $("#key-message").textContent = err.key
    ? "That API key was not accepted. Enter the server's key (kept in this browser tab only)."
    : "This server needs an API key. It is kept in this browser tab only.";
  $("#key-form").hidden = false;
  $("#api-key").focus();
  if (err.key) showError(err); // a missing key needs no more than the key form
  else clearError();
}

function useKey(event) {
  event.preventDefault();
  const key = $("#api-key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORE, key);
  $("#api-key").value = "";
  $("#key-form").hidden = true;
  clearError();
  showKeyStatus();
  refresh();
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORE);
  showKeyStatus();
}

function showKeyStatus() {
  $("#key-status").hidden = sessionStorage.getItem(KEY_STORE) === null;
}

/** Report an API failure: a 401 asks for the key, anything else is shown as a message. */
function fail(err) {
  if (!(err instanceof ApiError)) err = new ApiError(-1, String(err.message || err));
  if (err.status === 401) askForKey(err);
  else showError(err);
}

// ---- the search state and the URL -----------------------------------------------------------

/** The search as the URL holds it: `/?q=...&mode=...&k=...&path=...&meta=...&coh=0`. */
function stateFromUrl() {
  const params = new URLSearchParams(location.search);
  const state = { ...DEFAULTS };
  for (const name of Object.keys(DEFAULTS)) {
    if (params.has(name)) state[name] = params.get(name);
  }
  return state;
}

function urlFromState(state) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(state)) {
    if (value !== DEFAULTS[name]) params.set(name, value);
  }
  const query = params.toString();
  return query ? `?${query}` : location.pathname;
}

function readForm() {
  return {
    q: $("#q").value,
    mode: $("#mode").value,
    k: $("#k").value || DEFAULTS.k,
    path: $("#path").value.trim(),
    meta: $("#meta").value.trim(),
    coh: $("#coh").checked ? "1" : "0",
    order: shown ? shown.state.order : DEFAULTS.order,
  };
}

function writeForm(state) {
  $("#q").value = state.q;
  $("#mode").value = ["hybrid", "dense", "keyword"].includes(state.mode) ? state.mode : "hybrid";
  $("#k").value = state.k;
  $("#path").value = state.path;
  $("#meta").value = state.meta;
  $("#coh").checked = state.coh !== "0";
}

// ---- filters -----------------------------------------------------------------------------

const WHERE = /^\s*([^=!<>\s][^=!<>]*?)\s*(!=|>=|<=|=|>|<)\s*(.*)$/s;
const WHERE_OPS = { "=": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte" };

/** A VALUE as the CLI's --where reads it: a JSON number, true/false/null or string, else text. */
function whereValue(text) {
  try {
    const value = JSON.parse(text);
    return value !== null && typeof value === "object" ? text : value;
  } catch {
    return text;
  }
}

/** The metadata box: a JSON filter object, or `KEY=VALUE` conditions separated by commas. */
function metadataFilter(text) {
  if (!text) return [];
  if (text.startsWith("{")) {
    let spec;
    try {
      spec = JSON.parse(text);
    } catch (err) {
      throw new ApiError(422, `the metadata filter is not valid JSON (${err.message}).`);
    }
    return [spec];
  }
  return text.split(",").filter((part) => part.trim()).map((part) => {
    const match = WHERE.exec(part);
    if (!match) {
      throw new ApiError(422, `metadata condition '${part.trim()}' is not KEY=VALUE ` +
        "(or !=, >, >=, <, <=); write several separated by commas, or a JSON filter.");
    }
    const [, key, op, value] = match;
    return { [key]: { [WHERE_OPS[op]]: whereValue(value.trim()) } };
  });
}

/** The request body of POST /search for a state (throws ApiError for a malformed filter). */
function searchRequest(state) {
  const parts = metadataFilter(state.meta);
  if (state.path) parts.unshift({ path: { $glob: state.path } });
  const body = {
    query: state.q,
    mode: state.mode,
    k: Number(state.k),
    coherence: state.coh !== "0",
  };
  if (parts.length) body.filter = parts.length === 1 ? parts[0] : { $and: parts };
  return body;
}

// ---- searching -----------------------------------------------------------------------------

/** Search and show the hits (or the error). `#results` is aria-busy meanwhile, and its
 * `data-done` counts finished searches (what a browser test waits for). */
async function runSearch(state) {
  const seq = ++searchSeq;
  const results = $("#results");
  clearError();
  results.setAttribute("aria-busy", "true");
  try {
    const data = await api("search", searchRequest(state));
    if (seq === searchSeq) renderResults(data, state);
  } catch (err) {
    if (seq === searchSeq) fail(err);
  } finally {
    if (seq === searchSeq) {
      results.setAttribute("aria-busy", "false");
      results.dataset.done = String(Number(results.dataset.done || 0) + 1);
    }
  }
}

function onSubmit(event) {
  event.preventDefault();
  const state = readForm();
  if (!state.q.trim()) return $("#q").focus();
  const url = urlFromState(state);
  if (url !== (location.search || location.pathname)) history.pushState(null, "", url);
  runSearch(state);
}

/** Search what the URL says (on load, on back/forward), or clear the results. */
function fromUrl() {
  const state = stateFromUrl();
  writeForm(state);
  if (state.q.trim()) runSearch(state);
  else clearResults();
}

/** After the key is given: load what the page shows again. */
function refresh() {
  loadOverview();
  const state = stateFromUrl();
  if (state.q.trim()) runSearch(state);
}

// ---- results -------------------------------------------------------------------------------

function clearResults() {
  shown = null;
  $("#summary").textContent = "";
  $("#coherence").hidden = true;
  $("#hits").replaceChildren();
}

function renderResults(data, state) {
  shown = { data, state };
  const hits = data.hits;
  const noun = hits.length === 1 ? "hit" : "hits";
  $("#summary").textContent = hits.length
    ? `${hits.length} ${noun} · ${data.mode} · ${Math.round(data.took_ms)} ms`
    : `No passage matches${state.path || state.meta ? " with these filters" : ""}.`;
  renderHits();
}

/** The hits in the order chosen (ranked, or the suggested reading order) with their links. */
function renderHits() {
  const { data, state } = shown;
  const reading = state.order === "reading" && data.reading_order;
  const order = reading ? data.reading_order.order : data.hits.map((_, i) => i);
  const chain = reading ? data.reading_order : data.coherence;
  const scores = chain ? chain.pair_scores : [];
  const weakest = chain ? weakestLink(chain) : null;
  renderCoherence(data, order, scores, weakest, Boolean(reading));
  const items = [];
  order.forEach((index, position) => {
    if (position > 0 && scores.length) {
      items.push(linkItem(position - 1, order, scores[position - 1], weakest));
    }
    items.push(hitItem(data.hits[index], index));
  });
  $("#hits").replaceChildren(...items);
}

/** The weakest pair of a chain: the server's when it says, else the lowest score. */
function weakestLink(chain) {
  if (Number.isInteger(chain.weakest_link)) return chain.weakest_link;
  const scores = chain.pair_scores || [];
  if (!scores.length) return null;
  return scores.indexOf(Math.min(...scores));
}

function hitItem(hit, index) {
  const where = hit.path || hit.document_id;
  const lines = hit.line_start === hit.line_end
    ? `L${hit.line_start}` : `L${hit.line_start}–${hit.line_end}`;
  const head = el("div", { class: "hit-head" },
    el("span", { class: "rank" }, `#${index + 1}`),
    el("span", { class: "file", title: hit.file }, where),
    el("span", { class: "lines" }, lines),
    el("span", { class: "score", title: "score (higher is better)" }, formatScore(hit.score)));
  const headings = hit.headings && hit.headings.length
    ? el("div", { class: "headings" }, hit.headings.join(" › ")) : null;
  return el("li", { class: "hit", id: `hit-${index}`, dataset: { index: String(index) } },
    head, headings, passage(hit.text || "", hit.highlights || []));
}

/** The passage with each highlight span in a <mark>. Spans count Unicode code points (as
 * Python does), so the text is split into code points, not UTF-16 units. */
function passage(text, spans) {
  const chars = reflow(Array.from(text));
  const node = el("p", { class: "passage" });
  let last = 0;
  for (const [start, end] of spans) {
    if (start < last || end > chars.length) continue;
    node.append(chars.slice(last, start).join(""), el("mark", {}, chars.slice(start, end).join("")));
    last = end;
  }
  node.append(chars.slice(last).join(""));
  return node;
}

/** Hard-wrapped prose joined into paragraphs so it wraps to the screen: a single line break
 * before a letter becomes a space (one character for one, so highlight spans still fit);
 * blank lines, list items, headings and underlines keep their breaks. */
function reflow(chars) {
  return chars.map((c, i) => (c === "\n" && i > 0 && chars[i - 1] !== "\n" &&
    /\p{L}/u.test(chars[i + 1] || "") ? " " : c));
}

/** Between two hits: how likely the second follows the first. */
function linkItem(pair, order, score, weakest) {
  const item = el("li", {
    class: pair === weakest ? "link weakest" : "link",
    id: `link-${pair}`,
    dataset: { pair: String(pair) },
    "aria-label": `P(next) from #${order[pair] + 1} to #${order[pair + 1] + 1}`,
  }, el("span", { class: "arrow" }, "↓"), `P(next) ${score.toFixed(2)}`,
  pair === weakest ? el("span", { class: "tag" }, "weakest link") : null);
  item.style.setProperty("--p", clamp(score));
  return item;
}

function renderCoherence(data, order, scores, weakest, reading) {
  const box = $("#coherence");
  box.hidden = !scores.length;
  if (!scores.length) return;
  const mean = scores.reduce((a, b) => a + b, 0) / scores.length;
  $("#coherence-text").textContent = `Coherence: mean P(next) ${mean.toFixed(2)}` +
    (weakest === null ? "" : ` · weakest #${order[weakest] + 1} → #${order[weakest + 1] + 1}` +
      ` (${scores[weakest].toFixed(2)})`);
  const toggle = $("#reading-order");
  toggle.setAttribute("aria-pressed", String(reading));
  toggle.disabled = !data.reading_order;
  toggle.title = data.reading_order
    ? "Order the hits as the coherence scorer suggests reading them"
    : "A reading order is suggested for at most 12 hits";
  const strip = $("#strip");
  strip.setAttribute("aria-label", `P(next) of each consecutive pair: ${
    scores.map((s) => s.toFixed(2)).join(", ")}`);
  strip.replaceChildren(...scores.map((score, pair) => stripSegment(pair, order, score, weakest)));
}

function stripSegment(pair, order, score, weakest) {
  const segment = el("button", {
    type: "button",
    class: pair === weakest ? "segment weakest" : "segment",
    dataset: { pair: String(pair) },
    title: `#${order[pair] + 1} → #${order[pair + 1] + 1}: P(next) ${score.toFixed(2)}` +
      (pair === weakest ? " (weakest link)" : ""),
  }, el("span", { class: "fill" }));
  segment.style.setProperty("--p", clamp(score));
  segment.addEventListener("click", () => {
    document.getElementById(`link-${pair}`).scrollIntoView({ block: "center" });
  });
  return segment;
}

function toggleReadingOrder() {
  if (!shown || !shown.data.reading_order) return;
  shown.state = { ...shown.state, order: shown.state.order === "reading" ? "" : "reading" };
  history.replaceState(null, "", urlFromState(shown.state));
  renderHits();
}

function clamp(x) {
  return String(Math.min(1, Math.max(0, Number(x) || 0)));
}

function formatScore(score) {
  return Math.abs(score) >= 100 ? score.toFixed(0) : String(Number(score.toPrecision(3)));
}

// ---- the index overview ----------------------------------------------------------------------

async function loadOverview() {
  try {
    renderOverview(await api("stats"));
  } catch (err) {
    $("#overview-summary").textContent = "· not loaded";
    fail(err);
  }
}

function renderOverview(stats) {
  const index = stats.index;
  const figures = $("#overview-figures");
  if (!index) {
    $("#overview-summary").textContent = "· none yet";
    figures.replaceChildren(el("dt", {}, "Model"), el("dd", {}, stats.model),
      el("dt", {}, "Index"), el("dd", {}, "None yet: run bertsearch index FOLDER --index DIR."));
    $("#skipped").replaceChildren();
    return;
  }
  $("#overview-summary").textContent =
    `· ${count(index.documents, "document")} · ${count(index.passages, "passage")}`;
  const rows = [
    ["Documents", index.documents],
    ["Passages", index.passages],
    ["Model", stats.model + (index.model && index.model !== "default" ? ` (${index.model})` : "")],
    ["Backend", index.backend],
    ["Vectors", index.vector_index],
    ["Last sync", index.last_sync ? formatTime(index.last_sync) : "never (documents added by id)"],
  ];
  figures.replaceChildren(...rows.flatMap(([name, value]) => [
    el("dt", {}, name), el("dd", { dataset: { field: name.toLowerCase() } }, String(value ?? "—")),
  ]));
  renderSkipped(index.syncs || {});
}

/** Every folder's skipped files with the reason, and how many more were not listed. */
function renderSkipped(syncs) {
  const items = [];
  let total = 0;
  for (const [folder, sync] of Object.entries(syncs)) {
    const listed = sync.skipped || [];
    total += sync.skipped_total ?? listed.length;
    for (const file of listed) {
      items.push(el("li", { title: folder }, el("code", {}, file.path), ` — ${file.reason}`));
    }
    const more = (sync.skipped_total ?? listed.length) - listed.length;
    if (more > 0) items.push(el("li", { class: "more" }, `and ${more} more in ${folder}`));
  }
  const box = $("#skipped");
  if (!total) return box.replaceChildren(el("p", { class: "muted" }, "No files skipped."));
  box.replaceChildren(el("h2", {}, `Skipped files (${total})`), el("ul", {}, ...items));
}

function count(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function formatTime(seconds) {
  const date = new Date(seconds * 1000);
  const ago = Math.round((Date.now() - date.getTime()) / 60000);
  const relative = ago < 1 ? "just now" : ago < 120 ? `${ago} min ago`
    : ago < 2880 ? `${Math.round(ago / 60)} h ago` : `${Math.round(ago / 1440)} days ago`;
  return `${date.toLocaleString()} (${relative})`;
}

// ---- keyboard and start-up ---------------------------------------------------------------------

function onKey(event) {
  const typing = event.target instanceof Element &&
    event.target.closest("input, textarea, select, [contenteditable]");
  if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
    event.preventDefault();
    $("#q").focus();
    $("#q").select();
  } else if (event.key === "Escape" && event.target === $("#q")) {
    $("#q").blur();
  }
}

function start() {
  $("#search-form").addEventListener("submit", onSubmit);
  $("#key-form").addEventListener("submit", useKey);
  $("#forget-key").addEventListener("click", forgetKey);
  $("#reading-order").addEventListener("click", toggleReadingOrder);
  document.addEventListener("keydown", onKey);
  window.addEventListener("popstate", fromUrl);
  $("#overview").open = window.matchMedia("(min-width: 900px)").matches;
  showKeyStatus();
  loadOverview();
  fromUrl();
}

start();
