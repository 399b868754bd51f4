"use strict";
// The portal's script. It reads the public V11 API of the node that served the page (same
// origin, no credentials) and refreshes each panel by polling: one loop per panel, each waiting
// for its answer (or its timeout) before it sleeps, so a panel never has more than one request
// in flight. Nothing is polled while the page is hidden. Every value from the API is written
// with textContent, never parsed as HTML.

const API = "/api/v11";
const REQUEST_TIMEOUT_MS = 5000;
const BLOCKS_KEPT = 20;
const TPS_POINTS = 120;
const STALE_AFTER_MS = 6000;

/** A failed request, in the API's error shape: a code and a message. */
class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/**
 * GET `API + path` as JSON. `allow` lists non-2xx statuses whose body is an answer (the health
 * check is 503 when DOWN). Anything else is thrown as an ApiError: the API's own error, or one
 * made here when the node does not answer in time or at all.
 */
async function request(path, allow = []) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  try {
    const response = await fetch(API + path, {
      signal: abort.signal,
      cache: "no-store",
      headers: { Accept: "application/json" },
    });
    const body = await response.json().catch(() => null);
    if (body !== null && (response.ok || allow.includes(response.status))) {
      return body;
    }
    if (body && body.error && body.error.code) {
      throw new ApiError(body.error.code, body.error.message || "");
    }
    throw new ApiError("HTTP_" + response.status, "the node answered " + response.status + " without a JSON body");
  } catch (e) {
    if (e instanceof ApiError) throw e;
    if (e.name === "AbortError") {
      throw new ApiError("TIMEOUT", "no answer within " + REQUEST_TIMEOUT_MS / 1000 + " s");
    }
    throw new ApiError("UNREACHABLE", "the node did not answer (" + e.message + ")");
  } finally {
    clearTimeout(timer);
  }
}

// ---- Formatting and elements ----

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
const count = (n) => (n === null || n === undefined ? "–" : integer.format(n));
const ms = (n) => (n === null || n === undefined ? "–" : decimal.format(n) + " ms");

function duration(seconds) {
  const s = Math.floor(seconds);
  const parts = [[Math.floor(s / 86400), "d"], [Math.floor(s / 3600) % 24, "h"], [Math.floor(s / 60) % 60, "m"], [s % 60, "s"]];
  const first = parts.findIndex(([n]) => n > 0);
  return parts.slice(first < 0 ? 3 : first).map(([n, unit]) => n + unit).join(" ");
}

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell === null || cell === undefined ? "–" : String(cell);
    tr.append(td);
  }
  return tr;
}

function set(id, text) {
  document.getElementById(id).textContent = text;
}

/** The error as the page shows it everywhere: its code, then its message. */
function errorContent(error) {
  const code = error instanceof ApiError ? error.code : "ERROR";
  return [el("code", code), document.createTextNode(" " + error.message)];
}

function definitions(pairs) {
  const dl = el("dl");
  for (const [name, value] of pairs) {
    const dd = el("dd");
    if (value instanceof Node) dd.append(value);
    else dd.textContent = value === null || value === undefined ? "–" : String(value);
    dl.append(el("dt", name), dd);
  }
  return dl;
}

// ---- Polling ----

let lastAnswer = 0;
const sleep = (delay) => new Promise((resolve) => setTimeout(resolve, delay));

/** Refreshes one panel every `everyMs` while the page is visible; shows its errors in place. */
async function poll(panelId, everyMs, refresh) {
  const panel = document.getElementById(panelId);
  const box = panel.querySelector(".error");
  for (;;) {
    if (!document.hidden) {
      try {
        await refresh();
        lastAnswer = Date.now();
        box.hidden = true;
        panel.classList.remove("stale");
      } catch (e) {
        box.replaceChildren(...errorContent(e));
        box.hidden = false;
        panel.classList.add("stale");
      }
    }
    await sleep(everyMs);
  }
}

function showConnection() {
  const badge = document.getElementById("connection");
  const age = Date.now() - lastAnswer;
  if (lastAnswer === 0) return;
  const live = age < STALE_AFTER_MS;
  badge.dataset.state = live ? "live" : "stale";
  badge.textContent = live ? "live" : "no answer for " + Math.round(age / 1000) + " s, retrying";
}

// ---- Panels ----

async function refreshInfo() {
  const info = await request("/info");
  set("node-title", "node " + info.nodeId);
  set("node-info", "version " + info.version + " · chain " + info.chainId + " · " + info.shards + " shards on " + info.cores + " cores · validators " + info.validators.join(", "));
  document.title = "Aurigraph node " + info.nodeId;
}

const tpsHistory = [];

async function refreshStats() {
  const stats = await request("/stats");
  const p = stats.performance;
  const c = stats.consensus;
  set("stat-tps", count(p.tps));
  set("stat-peak-tps", count(p.peakTps));
  set("stat-avg-tps", count(p.avgTps));
  set("stat-total", count(p.totalTransactions));
  set("stat-rejected", count(p.rejectedTransactions));
  set("stat-height", count(c.blockHeight));
  set("stat-latency", ms(p.p50LatencyMs) + " / " + ms(p.p99LatencyMs));
  set("stat-latency-max", ms(p.maxLatencyMs));
  set("stat-process", decimal.format(p.cpuUsagePercent) + " % / " + count(p.memoryUsageMb) + " MB");
  set("stat-uptime", duration(p.uptimeSeconds));
  set("stat-window", count(p.latencyWindowSeconds));
  tpsHistory.push(p.tps);
  if (tpsHistory.length > TPS_POINTS) tpsHistory.shift();
  drawTps();
}

/** The TPS of the last TPS_POINTS polls as a line, drawn at the screen's pixel density. */
function drawTps() {
  const canvas = document.getElementById("tps-chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  const top = Math.max(1, ...tpsHistory);
  const x = (i) => (i * (width - 1)) / (TPS_POINTS - 1);
  const y = (v) => height - 2 - (v / top) * (height - 18);
  g.clearRect(0, 0, width, height);
  g.fillStyle = "#5b6b7f";
  g.font = "12px system-ui, sans-serif";
  g.fillText("TPS, last " + TPS_POINTS + " s (top: " + integer.format(top) + ")", 2, 12);
  g.strokeStyle = "#1f6feb";
  g.lineWidth = 2;
  g.beginPath();
  const offset = TPS_POINTS - tpsHistory.length;
  tpsHistory.forEach((v, i) => (i === 0 ? g.moveTo(x(offset + i), y(v)) : g.lineTo(x(offset + i), y(v))));
  g.stroke();
}

async function refreshShards() {
  const status = await request("/consensus/status");
  const rows = status.shards.map((s) =>
    row([s.shard, s.role, s.leader === null ? "none" : "node " + s.leader, count(s.term), count(s.lastIndex),
      count(s.commitIndex), count(s.appliedIndex), count(Math.max(0, s.lastIndex - s.commitIndex)),
      count(Math.max(0, s.commitIndex - s.appliedIndex)), count(s.pendingRecords)]));
  document.getElementById("shards").replaceChildren(...rows);
}

async function refreshValidators() {
  const answer = await request("/validators");
  const rows = answer.validators.map((v) =>
    row(["node " + v.nodeId + (v.self ? " (this node)" : ""), v.status,
      v.leaderOf.length ? v.leaderOf.join(", ") : "none", v.lagEntries === null ? "–" : count(v.lagEntries)]));
  document.getElementById("validators").replaceChildren(...rows);
}

function checkDetail(check) {
  const data = check.data || {};
  if (check.name === "ledger") {
    return data.error ? data.error : data.leaders + " of " + data.shards + " shards have a leader";
  }
  if (check.name === "beacon") {
    if (!data.configured) return "no source configured: serving " + data.serving;
    return "serving " + data.serving + (data.reasons ? " · " + data.reasons.join("; ") : "");
  }
  return data.reason || "";
}

async function refreshHealth() {
  const health = await request("/health", [503]);
  const items = [el("li", null, "check")];
  items[0].append(el("span", health.status, "status " + health.status), el("span", "node"));
  for (const check of health.checks) {
    const li = el("li", null, "check");
    li.append(el("span", check.status, "status " + check.status), el("span", check.name), el("span", checkDetail(check), "muted"));
    items.push(li);
  }
  document.getElementById("health").replaceChildren(...items);
}

const blocksSeen = new Map();

async function refreshBlocks() {
  const answer = await request("/blocks/latest");
  for (const b of answer.blocks) blocksSeen.set(b.shard + "/" + b.height, b);
  const newest = [...blocksSeen.values()].sort((a, b) => b.timestampMs - a.timestampMs || b.shard - a.shard);
  for (const old of newest.slice(BLOCKS_KEPT)) blocksSeen.delete(old.shard + "/" + old.height);
  const rows = newest.slice(0, BLOCKS_KEPT).map((b) =>
    row([b.shard, count(b.height), count(b.txCount), count(b.term), el("code", b.hash.slice(0, 16) + "…"),
      new Date(b.timestampMs).toLocaleTimeString()]));
  document.getElementById("blocks").replaceChildren(...rows);
}

// ---- Lookups ----

/** A lookup form: one request at a time; the answer or the error replaces the last one. */
function lookup(formId, path, render) {
  const form = document.getElementById(formId);
  const input = form.querySelector("input");
  const button = form.querySelector("button");
  const out = document.getElementById(formId.replace("-form", "-result"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    out.dataset.state = "busy";
    out.replaceChildren(el("p", "looking up…", "muted"));
    try {
      const answer = await request(path(input.value.trim()));
      out.replaceChildren(render(answer));
      out.dataset.state = "ok";
    } catch (e) {
      const box = el("div", null, "error");
      box.append(...errorContent(e));
      out.replaceChildren(box);
      out.dataset.state = "error";
    } finally {
      button.disabled = false;
    }
  });
}

function renderTransaction(tx) {
  const pairs = [["hash", el("code", tx.txHash)], ["status", tx.status], ["result", tx.result], ["shard", tx.shard]];
  if (tx.blockNumber !== undefined) pairs.push(["block", count(tx.blockNumber)]);
  if (tx.source) pairs.push(["source", tx.source]);
  return definitions(pairs);
}

function renderAccount(account) {
  const assets = Object.entries(account.balances);
  const balances = assets.length
    ? assets.map(([asset, amount]) => "asset " + asset + ": " + amount).join(" · ")
    : "no balance";
  return definitions([["address", el("code", account.address)], ["nonce", account.nonce], ["balances", balances]]);
}

lookup("tx-form", (hash) => "/transactions/" + encodeURIComponent(hash), renderTransaction);
lookup("account-form", (address) => "/accounts/" + encodeURIComponent(address), renderAccount);

poll("panel-stats", 1000, refreshStats);
poll("panel-shards", 2000, refreshShards);
poll("panel-validators", 2000, refreshValidators);
poll("panel-blocks", 2000, refreshBlocks);
poll("panel-health", 5000, refreshHealth);
setInterval(showConnection, 1000);
// The header: at once, then every 30 s; after a failure again in 2 s (the connection badge
// shows that the node does not answer).
(async function header() {
  for (;;) {
    const done = document.hidden ? false : await refreshInfo().then(() => true, () => false);
    await sleep(done ? 30000 : 2000);
  }
})();
