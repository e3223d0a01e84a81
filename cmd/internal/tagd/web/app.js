"use strict";
// The tagd page. It polls rather than holding a push stream, so it is right
// whichever of several tagd processes behind a load balancer answers. Names
// are always set as text, inside <bdi dir="auto">, so no name can run code or
// change the reading direction of what follows it.

const $ = (id) => document.getElementById(id);
const MAX_NAME = 64;
const PAGE = 20;
const state = {
  prefix: "", cursors: [""], next: "", selected: null, lastOk: null,
  failures: 0, polls: 0, timer: 0, live: "",
};

function token() { return sessionStorage.getItem("tagd-token") || ""; }

function clock(d) {
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function retryAfter(res) {
  const s = parseInt(res.headers.get("Retry-After") || "", 10);
  return Number.isFinite(s) && s > 0 ? s : 5;
}

// setLive shows the polling state. Only a change of state goes to the
// status region, so a screen reader is not told the time every second.
function setLive(kind, words, detail) {
  const el = $("live");
  el.className = "live " + kind;
  if (state.live !== words) { $("live-state").textContent = words; state.live = words; }
  $("live-time").textContent = detail;
  $("tags").classList.toggle("stale", kind !== "ok");
}

function asOf() { return state.lastOk ? " · counts as of " + clock(state.lastOk) : ""; }

// newKey is an Idempotency-Key for one submission: resent with the same
// key, a submission counts once, however its first answer was lost.
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// write sends a submission with its own Idempotency-Key, and sends it again,
// with the same key, when the connection failed or the server said the
// database was unavailable: safe, since the key makes it count once.
async function write(method, path, body) {
  const key = newKey();
  let last;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      last = await api(method, path, body, key);
      if (last.res.status !== 503) return last;
    } catch (e) {
      if (attempt === 2) throw e;
    }
    await new Promise((r) => setTimeout(r, 1000 * (attempt + 1)));
  }
  return last;
}

async function api(method, path, body, key) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (key) headers["Idempotency-Key"] = key;
  if (method !== "GET" && token()) headers["Authorization"] = "Bearer " + token();
  const res = await fetch(path, { method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await res.json(); } catch (e) { /* not JSON: reported by status */ }
  return { res, data };
}

function errorText(res, data) {
  if (data && data.error) return data.error.message;
  return "The server answered " + res.status + ".";
}

function status(msg, error) {
  $("status").textContent = msg;
  $("status").className = "status" + (error ? " error" : "");
}

function nameEl(name, tag) {
  const b = document.createElement(tag || "bdi");
  b.dir = "auto";
  b.className = "name";
  b.textContent = name;
  return b;
}

function listURL() {
  const q = new URLSearchParams({ limit: String(PAGE) });
  if (state.prefix) q.set("prefix", state.prefix);
  const c = state.cursors[state.cursors.length - 1];
  if (c) q.set("cursor", c);
  return "/api/tags?" + q.toString();
}

function renderTags(body) {
  const ol = $("tags");
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : undefined;
  const items = body.tags.map((t) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "tag";
    b.dataset.key = t.key;
    b.setAttribute("aria-pressed", String(t.key === state.selected));
    const c = document.createElement("span");
    c.className = "count";
    c.textContent = t.count;
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = t.count === 1 ? " submission" : " submissions";
    c.append(hidden);
    b.append(nameEl(t.name), c);
    b.addEventListener("click", () => select(t.key, t.name));
    li.append(b);
    return li;
  });
  if (items.length === 0) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = state.prefix ? "No tags start with that." : "No tags yet.";
    items.push(li);
  }
  ol.replaceChildren(...items);
  if (focused !== undefined) {
    const again = [...ol.querySelectorAll("button.tag")].find((b) => b.dataset.key === focused);
    if (again) again.focus();
  }
  state.next = body.next_cursor || "";
  const page = state.cursors.length;
  $("page-info").textContent = "Page " + page + (state.prefix ? " of tags starting with \u201c" + state.prefix + "\u201d" : "");
  $("prev").disabled = page === 1;
  $("next").disabled = !state.next;
}

async function poll() {
  clearTimeout(state.timer);
  let delay = document.hidden ? 5000 : 1000;
  try {
    const res = await fetch(listURL(), { cache: "no-store" });
    if (res.status === 429) {
      const s = retryAfter(res);
      setLive("limited", "Rate limited", " · retrying in " + s + " s" + asOf());
      delay = s * 1000;
    } else if (!res.ok) {
      const data = await res.json().catch(() => null);
      if (res.status === 400 && data && data.error && data.error.code === "invalid_cursor") { resetPages(); delay = 0; }
      else if (res.status === 400) status(errorText(res, data), true); // a search the server refuses
      else throw new Error(errorText(res, data));
    } else {
      renderTags(await res.json());
      state.failures = 0;
      state.lastOk = new Date();
      setLive("ok", "Live", " · updated " + clock(state.lastOk));
      if (state.selected && ++state.polls % 5 === 0) await loadHistory();
    }
  } catch (e) {
    state.failures++;
    delay = Math.min(10000, 1000 * 2 ** Math.min(state.failures - 1, 4));
    setLive("reconnecting", "Reconnecting\u2026", " · next try in " + Math.round(delay / 1000) + " s" + asOf());
  }
  state.timer = setTimeout(poll, delay);
}

function resetPages() { state.cursors = [""]; state.next = ""; }

async function select(key, name) {
  state.selected = key;
  for (const b of $("tags").querySelectorAll("button.tag")) b.setAttribute("aria-pressed", String(b.dataset.key === key));
  $("detail").hidden = false;
  $("detail-name").textContent = name;
  await loadHistory();
}

async function loadHistory() {
  const key = state.selected;
  const { res, data } = await api("GET", "/api/tags/" + encodeURIComponent(key) + "/history?minutes=60");
  if (key !== state.selected) return;
  if (!res.ok) { $("detail-summary").textContent = errorText(res, data); return; }
  drawChart(data);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function drawChart(h) {
  const total = h.counts.reduce((a, b) => a + b, 0);
  const most = Math.max(0, ...h.counts);
  const summary = total + (total === 1 ? " submission" : " submissions") + " in the last " + h.minutes +
    " minutes" + (most > 0 ? ", at most " + most + " in one minute" : "") + ".";
  $("detail-name").textContent = h.name;
  $("detail-summary").textContent = summary;
  const W = 600, H = 150, top = 4, bottom = 2, plot = H - top - bottom;
  const s = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", preserveAspectRatio: "none" });
  s.setAttribute("aria-label", "Bar chart of submissions per minute. " + summary);
  const bw = W / h.counts.length;
  h.counts.forEach((c, i) => {
    if (c === 0) return;
    const bh = Math.max(2, (c / most) * plot);
    const r = svg("rect", { class: "bar", x: i * bw + 1, y: top + plot - bh, width: Math.max(1, bw - 2), height: bh });
    const t = svg("title", {});
    t.textContent = c + " at " + clock(new Date(Date.parse(h.start) + i * 60000)).slice(0, 5);
    r.append(t);
    s.append(r);
  });
  s.append(svg("line", { class: "base", x1: 0, y1: top + plot, x2: W, y2: top + plot }));
  $("chart-max").textContent = most > 0 ? "max " + most + " a minute" : "no submissions";
  $("chart").replaceChildren(s);
}

// nameLength counts as the server does: characters after trimming and
// collapsing spaces, in NFC.
function nameLength(v) { return [...v.trim().replace(/\s+/g, " ").normalize("NFC")].length; }

function updateCount() {
  const n = nameLength($("name").value);
  $("name-count").textContent = n;
  $("name-help").classList.toggle("over", n > MAX_NAME);
}

function tokenFromInput() {
  const t = $("token").value.trim();
  if (t) sessionStorage.setItem("tagd-token", t);
}

async function submit(ev) {
  ev.preventDefault();
  const name = $("name").value;
  const n = nameLength(name);
  if (n === 0 || n > MAX_NAME) { status("A tag name is 1 to " + MAX_NAME + " characters; this one has " + n + ".", true); $("name").focus(); return; }
  tokenFromInput();
  try {
    const { res, data } = await write("POST", "/api/tags", { name });
    if (!res.ok) {
      if (res.status === 401) { $("token-row").hidden = false; $("token").focus(); }
      status(errorText(res, data), true);
      return;
    }
    status((data.created ? "Created \u201c" : "Counted \u201c") + data.name + "\u201d: " + data.count);
    $("name").value = "";
    updateCount();
    poll();
    if (state.selected === data.key) loadHistory();
  } catch (e) { status("Could not reach the server: " + e.message, true); }
}

function itemTags() { return $("item-tags").value.split(",").map((s) => s.trim()).filter((s) => s !== ""); }

function showItem(item, tags, note) {
  const out = $("item-result");
  const head = document.createElement("p");
  head.append("Item ", nameEl(item), note);
  const ul = document.createElement("ul");
  for (const t of tags) {
    const li = document.createElement("li");
    li.append(nameEl(t.name), " " + t.count);
    ul.append(li);
  }
  out.replaceChildren(head, ul);
}

async function tagItem(ev) {
  ev.preventDefault();
  const item = $("item").value.trim();
  const tags = itemTags();
  if (!item || tags.length === 0) { $("item-result").textContent = "Give an item and at least one tag."; return; }
  tokenFromInput();
  try {
    const { res, data } = await write("PUT", "/api/items/" + encodeURIComponent(item) + "/tags", { tags });
    if (!res.ok) {
      if (res.status === 401) { $("token-row").hidden = false; $("token").focus(); }
      $("item-result").textContent = errorText(res, data);
      return;
    }
    const added = data.tags.filter((t) => t.attached).length;
    $("item-tags").value = "";
    await showItemTags(item, " \u2014 " + added + " tag" + (added === 1 ? "" : "s") + " added; it now has:");
    poll();
    if (state.selected && data.tags.some((t) => t.key === state.selected)) loadHistory();
  } catch (e) { $("item-result").textContent = "Could not reach the server: " + e.message; }
}

async function showItemTags(item, note) {
  item = item || $("item").value.trim();
  if (!item) { $("item-result").textContent = "Give an item."; return; }
  try {
    const { res, data } = await api("GET", "/api/items/" + encodeURIComponent(item) + "/tags");
    if (res.status === 404) { $("item-result").textContent = "That item has no tags yet."; return; }
    if (!res.ok) { $("item-result").textContent = errorText(res, data); return; }
    showItem(data.item, data.tags, note || " has these tags:");
  } catch (e) { $("item-result").textContent = "Could not reach the server: " + e.message; }
}

let searchTimer = 0;
function search() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => { state.prefix = $("search").value; resetPages(); poll(); }, 250);
}

document.addEventListener("DOMContentLoaded", () => {
  if (token()) { $("token-row").hidden = false; $("token").value = token(); }
  $("submit-form").addEventListener("submit", submit);
  $("name").addEventListener("input", updateCount);
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem("tagd-token");
    $("token").value = "";
    status("The token is forgotten.");
  });
  $("search").addEventListener("input", search);
  $("next").addEventListener("click", () => { if (state.next) { state.cursors.push(state.next); poll(); } });
  $("prev").addEventListener("click", () => { if (state.cursors.length > 1) { state.cursors.pop(); poll(); } });
  $("item-form").addEventListener("submit", tagItem);
  $("item-show").addEventListener("click", () => showItemTags());
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
  poll();
});
