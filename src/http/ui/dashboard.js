// The live dashboard: polls /stats every second and draws what a person needs to see at a
// glance: is it ready, how busy, how fast, what fails.
"use strict";

const HISTORY = 60;
const rpsHistory = [];
const p99History = [];
const $ = (id) => document.getElementById(id);

/** Client errors are the client's; every other failure counts against health. */
const CLIENT_ERRORS = new Set([
  "empty_body", "bad_request", "undecodable_image", "unsupported_media_type",
  "unsupported_image_format", "unsupported_encoding", "payload_too_large", "body_timeout",
  "too_many_pixels", "too_many_scans", "over_decode_budget", "not_found", "unknown_model",
  "unauthorized", "forbidden", "InvalidArgument", "NotFound", "Unauthenticated",
]);

function sparkline(id, history, value) {
  history.push(value);
  if (history.length > HISTORY) history.shift();
  const top = Math.max(...history, 1e-9);
  const points = history.map((v, i) => (HISTORY - history.length + i) + "," + (30 - 28 * v / top).toFixed(1));
  $(id).setAttribute("points", points.join(" "));
}

function rows(tbody, cells) {
  tbody.replaceChildren(...cells.map((row) => {
    const tr = el("tr");
    row.forEach((cell, i) => tr.append(el(i === 0 ? "th" : "td", "", cell)));
    tr.firstChild.scope = "row";
    return tr;
  }));
}

function judge(stats, serverErrors) {
  const use = stats.admission.capacity ? stats.admission.in_use / stats.admission.capacity : 0;
  if (!stats.ready) return ["bad", "Not ready: /readyz answers 503 (starting, draining or failed)"];
  if (serverErrors > 0) return ["warn", serverErrors + " requests failed on the service's side in the last 60 s"];
  if (use >= 0.8) return ["warn", "Busy: " + Math.round(100 * use) + " % of admission in use"];
  return ["good", "Healthy: ready, no service-side failures, admission " + Math.round(100 * use) + " % used"];
}

function draw(stats) {
  const short = stats.last_10s;
  const long = stats.last_60s;
  const errors = Object.entries(long.errors).sort((a, b) => b[1] - a[1]);
  const serverErrors = errors.filter(([type]) => !CLIENT_ERRORS.has(type)).reduce((n, [, c]) => n + c, 0);
  const [level, text] = judge(stats, serverErrors);
  $("status").className = "status " + level;
  $("status").textContent = text;

  $("rps").textContent = short.requests_per_second.toFixed(1);
  $("ips").textContent = short.images_per_second.toFixed(1) + " images/s · " + stats.totals.requests + " requests since start";
  sparkline("rps-line", rpsHistory, short.requests_per_second);

  const total = long.latency_ms.total;
  $("latency").textContent = total.count ? ms(total.p50) + " / " + ms(total.p99) : "no traffic";
  sparkline("p99-line", p99History, total.p99);

  const { in_use: inUse, capacity } = stats.admission;
  $("admission").textContent = inUse + " / " + capacity;
  $("queue").textContent = stats.queue_depth + " images waiting in the batching queue";
  $("admission-fill").style.width = (capacity ? (100 * inUse) / capacity : 0) + "%";

  $("batch").textContent = long.mean_batch_size ? long.mean_batch_size.toFixed(2) : "–";
  const batches = Object.values(long.batch_sizes).reduce((a, b) => a + b, 0);
  $("batches").textContent = batches + " batches in the last 60 s";
  rows($("batch-sizes"), Object.entries(long.batch_sizes).map(([size, n]) =>
    [size, String(n), (100 * n / batches).toFixed(1) + " %"]));

  const failed = errors.reduce((n, [, c]) => n + c, 0);
  $("errors").textContent = String(failed);
  rows($("error-types"), errors.length ? errors.map(([type, n]) => [type, String(n)]) : [["none", "0"]]);

  const fmt = (v) => (total.count ? v.toFixed(1) : "–");
  rows($("stages"), ["preprocess", "queue", "inference", "total"].map((stage) => {
    const p = long.latency_ms[stage];
    return [stage, fmt(p.p50), fmt(p.p90), fmt(p.p99), fmt(p.max)];
  }));
}

async function poll() {
  const answer = await getJson("/stats");
  if (answer.ok) {
    draw(answer.body);
  } else {
    $("status").className = "status bad";
    $("status").textContent = "Cannot read /stats: " + describeError(answer.status, answer.body);
  }
  setTimeout(poll, 1000);
}

keepKey();
poll();
