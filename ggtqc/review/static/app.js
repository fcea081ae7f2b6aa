// ggtqc review: one pair per screen, keyboard first. Plain JavaScript, no build step.
// Every decision is posted to /api/label and written to RUN/labels.jsonl before the next
// pair is shown; nothing is kept only in the page.
"use strict";

const $ = (selector) => document.querySelector(selector);
const panes = [$("#pane-a"), $("#pane-b")];

const app = {
  state: null,          // /api/state
  queue: null,          // queue name
  index: 0,             // position in the queue
  pair: null,           // /api/pair
  version: 0,           // labels version last seen
  pending: new Set(),   // tags toggled on a pair not yet labelled
  blind: localStorage.getItem("ggtqc.blind") === "1",
  heat: -1,             // which heatmap is overlaid (-1: none)
  swapped: false,       // flicker key held
  view: { s: 1, x: 0, y: 0 },
  box: { w: 1, h: 1 },  // the HQ image size: both panes show the pair at this size
  undo: JSON.parse(sessionStorage.getItem("ggtqc.undo") || "[]"),
  chain: Promise.resolve(),
};

// ---- talking to the server -------------------------------------------------------------
async function api(path, body) {
  let response;
  try {
    response = await fetch(path, body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
  } catch (error) {
    throw new Error("the review server cannot be reached (was 'ggtqc review' stopped?)");
  }
  const value = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(value.error || `HTTP ${response.status}`);
  return value;
}

function say(text, error = false) {
  const box = $("#message");
  box.textContent = text || "";
  box.classList.toggle("error", !!error);
}

// Key actions run one after another, so fast typing labels consecutive pairs in order.
function later(action) {
  app.chain = app.chain.then(action).catch((error) => say(error.message, true));
  return app.chain;
}

// ---- loading ---------------------------------------------------------------------------
async function start() {
  app.state = await api("/api/state");
  app.version = app.state.version;
  $("#reviewer").textContent = `reviewer: ${app.state.reviewer}`;
  $("#help-audit").textContent = app.state.audit_note;
  buildTags();
  const names = app.state.queues.map((q) => q.name);
  const wanted = new URLSearchParams(location.hash.slice(1)).get("queue") || localStorage.getItem("ggtqc.queue");
  const review = app.state.queues.find((q) => q.name === "review");
  const queue = names.includes(wanted) ? wanted : (review && review.size ? "review" : "audit");
  if (app.state.problems.length) say(app.state.problems.join(" · "));
  await openQueue(queue);
}

function queueInfo(name) {
  return app.state.queues.find((q) => q.name === name);
}

async function openQueue(name, index) {
  app.queue = name;
  localStorage.setItem("ggtqc.queue", name);
  history.replaceState(null, "", `#queue=${encodeURIComponent(name)}`);
  const info = queueInfo(name);
  app.index = index ?? (info.first_unlabelled ?? info.size);
  fillQueues();
  await show();
}

function fillQueues() {
  const select = $("#queue");
  select.replaceChildren(...app.state.queues.map((q) => {
    const option = document.createElement("option");
    option.value = q.name;
    option.textContent = `${q.title} (${q.size})`;
    option.selected = q.name === app.queue;
    return option;
  }));
  const audit = app.queue === "audit";
  const note = $("#note");
  note.classList.toggle("audit", audit);
  note.textContent = audit
    ? "Audit sample: uniformly random pairs of the whole run, in a fixed order. Calibration learns from these labels: label them in order."
    : "Pairs in this queue were picked by their verdict, so their labels over-represent borderline pairs. Calibration needs the audit queue too (press q to reach it).";
}

async function show() {
  const info = queueInfo(app.queue);
  if (app.index >= info.size) {
    app.pair = null;
    render();
    return;
  }
  let pair;
  try {
    pair = await api(`/api/pair?queue=${encodeURIComponent(app.queue)}&index=${app.index}`);
  } catch (error) {
    if (await rebuilt()) return;
    throw error;
  }
  if (pair.generation !== app.state.generation) {
    await start();  // the results were rewritten: queues changed, start over at the first unlabelled pair
    return;
  }
  app.pair = pair;
  app.version = pair.version;
  Object.assign(info, { labelled: pair.labelled, first_unlabelled: pair.first_unlabelled });
  app.pending = new Set(pair.mine ? pair.mine.tags : []);
  app.heat = -1;
  loadImages(pair);
  render();
  prefetch(app.index + 1);
}

async function rebuilt() {
  const state = await api("/api/state").catch(() => null);
  if (!state || state.generation === app.state.generation) return false;
  await start();
  return true;
}

async function prefetch(index) {
  if (index >= queueInfo(app.queue).size) return;
  try {
    const next = await api(`/api/pair?queue=${encodeURIComponent(app.queue)}&index=${index}`);
    for (const side of ["lq", "hq"]) if (!next.images[side].problem) new Image().src = next.images[side].url;
  } catch (error) { /* only a head start */ }
}

function loadImages(pair) {
  app.box = null;
  for (const pane of panes) {
    pane.querySelector(".problem").hidden = true;
    for (const side of ["lq", "hq"]) {
      const img = pane.querySelector(`img.${side}`);
      img.removeAttribute("src");
      const problem = pair.images[side].problem;
      if (problem) {
        img.dataset.problem = `${side.toUpperCase()}: ${problem}`;
        continue;
      }
      delete img.dataset.problem;
      img.onload = () => {
        // the HQ size sets the box both images are shown at; the LQ until the HQ arrives
        if (side === "hq" || !app.box) {
          app.box = { w: img.naturalWidth, h: img.naturalHeight };
          fit();
        }
        render();
      };
      img.onerror = async () => {
        img.dataset.problem = `${side.toUpperCase()}: cannot be shown`;
        try { await api(pair.images[side].url); } catch (error) { img.dataset.problem = error.message; }
        render();
      };
      img.src = pair.images[side].url;
    }
  }
}

// ---- drawing ---------------------------------------------------------------------------
function render() {
  const pair = app.pair;
  const info = queueInfo(app.queue);
  $("#position").textContent = pair ? `${app.index + 1} / ${info.size}` : `end of queue (${info.size})`;
  $("#progress").textContent = `labelled ${info.labelled} of ${info.size}`;
  $("#blind-badge").hidden = !app.blind;
  $("#blind-note").hidden = !app.blind;
  $("#scored").hidden = app.blind;
  const agreement = app.state.agreement;
  $("#agreement").textContent = agreement.shared
    ? `agreement ${Math.round(agreement.agree * 100)}% on ${agreement.shared} pair${agreement.shared === 1 ? "" : "s"} labelled by two or more of ${agreement.reviewers.length} reviewers`
      + agreement.pairs.slice(0, 3).map((p) => (p.kappa === null ? "" : ` · κ ${p.reviewers.join("–")} ${p.kappa.toFixed(2)}`)).join("")
    : "";
  if (!pair) {
    $("#pair-id").textContent = info.size ? "All pairs of this queue are behind you." : "This queue is empty.";
    $("#mine").textContent = info.size ? `Labelled ${info.labelled} of ${info.size}. Press q for another queue, ← to go back.` : "Press q for another queue.";
    $("#mine").className = "";
    for (const pane of panes) {
      pane.querySelectorAll("img").forEach((img) => { img.removeAttribute("src"); img.hidden = true; });
      pane.querySelector(".caption").textContent = "";
    }
    renderTags();
    return;
  }
  $("#pair-id").textContent = pair.id;
  const mine = pair.mine;
  const mineBox = $("#mine");
  mineBox.className = mine ? mine.label : "";
  mineBox.textContent = mine
    ? `Your label: ${mine.label}${mine.tags.length ? ` (${mine.tags.join(", ")})` : ""} · ${mine.time}`
    : "Not labelled by you yet.";
  const verdict = $("#verdict");
  verdict.className = pair.verdict;
  verdict.textContent = `verdict: ${pair.verdict}`;
  $("#reasons").replaceChildren(...pair.reasons.map((reason) => {
    const item = document.createElement("li");
    item.textContent = reason;
    return item;
  }));
  renderScores(pair);
  const heatNames = Object.keys(pair.heatmaps);
  $("#heat-hint").textContent = heatNames.length ? `heatmaps (h): ${heatNames.join(", ")}` : "no heatmaps";
  $("#others").textContent = pair.others.length
    ? "Other reviewers: " + pair.others.map((o) => `${o.reviewer} ${o.label}`).join(", ")
    : "";
  renderTags();
  renderPanes();
}

function renderScores(pair) {
  const rows = [];
  const failed = new Set(pair.failed);
  const band = new Set(pair.review);
  // filters that rejected the pair or put it in the review band come first
  const flagged = (filter) => [...failed, ...band].some((name) => name.startsWith(`${filter}.`));
  const entries = Object.entries(pair.scores || {}).sort(([a], [b]) => flagged(b) - flagged(a));
  for (const [filter, fields] of entries) {
    const head = document.createElement("tr");
    head.innerHTML = `<th colspan="3"></th>`;
    head.firstChild.textContent = filter;
    rows.push(head);
    for (const [field, value] of Object.entries(fields || {})) {
      const name = `${filter}.${field}`;
      const rule = ((app.state.thresholds[filter] || {})[field]) || {};
      const row = document.createElement("tr");
      row.className = failed.has(name) ? "fail" : band.has(name) ? "band" : "";
      const threshold = rule.threshold === null || rule.threshold === undefined ? "" : `${rule.better === "higher" ? "≥" : "≤"} ${rule.threshold}`;
      for (const [text, kind] of [[field, ""], [value === null ? "–" : formatNumber(value), "v"], [threshold, "t"]]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        cell.className = kind;
        row.appendChild(cell);
      }
      rows.push(row);
    }
  }
  $("#scores").replaceChildren(...rows);
}

function formatNumber(value) {
  return typeof value === "number" && !Number.isInteger(value) ? value.toPrecision(4).replace(/\.?0+$/, "") : String(value);
}

function tagKeys() {
  const keys = {};
  let digit = 1;
  for (const tag of app.state.tags) {
    if (tag === "other") keys[tag] = "o";
    else if (digit <= 10) keys[tag] = String(digit++ % 10);
  }
  return keys;
}

function buildTags() {
  const keys = tagKeys();
  $("#tags").replaceChildren(...app.state.tags.map((tag) => {
    const item = document.createElement("li");
    item.dataset.tag = tag;
    item.innerHTML = "<kbd></kbd> <span></span>";
    item.firstChild.textContent = keys[tag] || "";
    item.lastChild.textContent = tag.replaceAll("_", " ");
    return item;
  }));
}

function renderTags() {
  for (const item of document.querySelectorAll("#tags li")) item.classList.toggle("on", app.pending.has(item.dataset.tag));
}

function renderPanes() {
  const heatNames = app.pair ? Object.keys(app.pair.heatmaps) : [];
  const heatName = !app.blind && app.heat >= 0 ? heatNames[app.heat] : null;
  panes.forEach((pane, k) => {
    const side = (k === 0) !== app.swapped ? "lq" : "hq";
    const other = side === "lq" ? "hq" : "lq";
    const shown = pane.querySelector(`img.${side}`);
    shown.hidden = !!shown.dataset.problem;  // the message instead of a broken image
    pane.querySelector(`img.${other}`).hidden = true;
    const heat = pane.querySelector("img.heat");
    if (heat) {
      heat.hidden = !heatName;
      if (heatName && heat.getAttribute("src") !== app.pair.heatmaps[heatName]) heat.src = app.pair.heatmaps[heatName];
    }
    const problem = pane.querySelector(".problem");
    problem.hidden = !shown.dataset.problem;
    problem.textContent = shown.dataset.problem || "";
    const caption = pane.querySelector(".caption");
    const size = shown.naturalWidth ? ` ${shown.naturalWidth}×${shown.naturalHeight}` : "";
    const name = app.pair ? app.pair.images[side].name || "" : "";
    caption.innerHTML = `<b></b><span></span>`;
    caption.firstChild.textContent = side.toUpperCase() + (app.swapped ? " ⇄" : "");
    caption.firstChild.className = app.swapped ? "swapped" : "";
    caption.lastChild.textContent = `${size}  ${name}${heatName && heat ? `  · heatmap: ${heatName}` : ""}`;
  });
  applyView();
}

// ---- synchronized zoom and pan ---------------------------------------------------------
function stageSize() {
  const stage = panes[0].querySelector(".stage");
  return { w: stage.clientWidth, h: stage.clientHeight };
}

function fit() {
  if (!app.box) return;
  const { w, h } = stageSize();
  const s = Math.min(w / app.box.w, h / app.box.h);
  app.view = { s, x: (w - app.box.w * s) / 2, y: (h - app.box.h * s) / 2 };
  applyView();
}

function zoomAt(factor, mx, my) {
  const { s, x, y } = app.view;
  const next = Math.min(64, Math.max(0.02, s * factor));
  app.view = { s: next, x: mx - ((mx - x) * next) / s, y: my - ((my - y) * next) / s };
  applyView();
}

function oneToOne() {
  const { w, h } = stageSize();
  zoomAt(1 / app.view.s, w / 2, h / 2);
}

function applyView() {
  if (!app.box) return;
  const { s, x, y } = app.view;
  for (const pane of panes) {
    pane.querySelector(".stage").classList.toggle("pixels", s >= 1);
    for (const img of pane.querySelectorAll("img")) {
      img.style.width = `${app.box.w}px`;
      img.style.height = `${app.box.h}px`;
      img.style.transform = `translate(${x}px, ${y}px) scale(${s})`;
    }
  }
}

for (const pane of panes) {
  const stage = pane.querySelector(".stage");
  stage.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = stage.getBoundingClientRect();
    zoomAt(Math.pow(1.0015, -event.deltaY), event.clientX - rect.left, event.clientY - rect.top);
  }, { passive: false });
  stage.addEventListener("pointerdown", (event) => {
    stage.setPointerCapture(event.pointerId);
    stage.classList.add("dragging");
    let last = [event.clientX, event.clientY];
    const move = (e) => {
      app.view.x += e.clientX - last[0];
      app.view.y += e.clientY - last[1];
      last = [e.clientX, e.clientY];
      applyView();
    };
    const up = () => {
      stage.classList.remove("dragging");
      stage.removeEventListener("pointermove", move);
      stage.removeEventListener("pointerup", up);
    };
    stage.addEventListener("pointermove", move);
    stage.addEventListener("pointerup", up);
  });
}
window.addEventListener("resize", fit);

// ---- labelling -------------------------------------------------------------------------
async function post(pairId, queue, label, tags, scoresShown) {
  let answer;
  try {
    answer = await api("/api/label", { id: pairId, queue, label, tags, scores_shown: scoresShown, version: app.version });
  } catch (error) {
    throw new Error(`Not saved: ${error.message}`);
  }
  if (answer.conflict) {
    say("Labels were added from another tab or window since this page looked; all are kept (the last per pair and reviewer wins). Reload to see them.");
  } else {
    say("");
  }
  app.version = answer.version;
  Object.assign(queueInfo(app.queue), { labelled: answer.labelled, first_unlabelled: answer.first_unlabelled });
  return answer.record;
}

async function decide(label) {
  const pair = app.pair;
  if (!pair) return;
  await post(pair.id, app.queue, label, [...app.pending], !app.blind);
  app.undo.push({ queue: app.queue, index: app.index, id: pair.id, before: pair.mine });
  app.undo = app.undo.slice(-200);
  sessionStorage.setItem("ggtqc.undo", JSON.stringify(app.undo));
  app.index += 1;
  await show();
}

async function undo() {
  const step = app.undo.pop();
  if (!step) {
    say("Nothing to undo in this tab.");
    return;
  }
  sessionStorage.setItem("ggtqc.undo", JSON.stringify(app.undo));
  const before = step.before;
  // A new line puts back the earlier label; a pair that had none becomes "unsure" (seen, no decision).
  await post(step.id, before ? before.queue : step.queue, before ? before.label : "unsure", before ? before.tags : [], before ? before.scores_shown : !app.blind);
  if (step.queue !== app.queue) await openQueue(step.queue, step.index);
  else {
    app.index = step.index;
    await show();
  }
  say(`Undone: ${step.id} is back to ${before ? before.label : "no decision (recorded as unsure)"}; label it again.`);
}

async function toggleTag(tag) {
  if (!app.pair) return;
  if (app.pending.has(tag)) app.pending.delete(tag);
  else app.pending.add(tag);
  renderTags();
  const mine = app.pair.mine;
  if (mine) {
    // the pair is labelled already: the changed tags are a new line at once
    app.pair.mine = await post(app.pair.id, app.queue, mine.label, [...app.pending], !app.blind);
    render();
  } else {
    say("Tags are saved with your decision on this pair (r to reject).");
  }
}

async function go(index) {
  app.index = Math.max(0, Math.min(index, queueInfo(app.queue).size));
  await show();
}

async function cycleQueue(step) {
  const names = app.state.queues.map((q) => q.name);
  const next = names[(names.indexOf(app.queue) + step + names.length) % names.length];
  app.state = await api("/api/state");
  await openQueue(next);
}

// ---- keys ------------------------------------------------------------------------------
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target instanceof HTMLSelectElement) return;
  const help = $("#help");
  const key = event.key;
  if (!help.hidden && key !== "?" && key !== "Escape") return;
  const tagByKey = Object.fromEntries(Object.entries(tagKeys()).map(([tag, k]) => [k, tag]));
  let handled = true;
  if (key === " ") {
    if (!event.repeat && !app.swapped) {
      app.swapped = true;
      renderPanes();
    }
  } else if (key === "a") later(() => decide("accept"));
  else if (key === "r") later(() => decide("reject"));
  else if (key === "s") later(() => decide("unsure"));
  else if (key === "z" || key === "Backspace") later(undo);
  else if (key === "ArrowRight" || key === "j") later(() => go(app.index + 1));
  else if (key === "ArrowLeft" || key === "k") later(() => go(app.index - 1));
  else if (key === "g") later(() => go(queueInfo(app.queue).first_unlabelled ?? queueInfo(app.queue).size));
  else if (key in tagByKey) later(() => toggleTag(tagByKey[key]));
  else if (key === "h") {
    const count = app.pair ? Object.keys(app.pair.heatmaps).length : 0;
    app.heat = app.heat + 1 < count ? app.heat + 1 : -1;
    if (app.blind && count) say("Heatmaps are hidden in blind mode (b).");
    renderPanes();
  } else if (key === "b") {
    app.blind = !app.blind;
    localStorage.setItem("ggtqc.blind", app.blind ? "1" : "0");
    render();
  } else if (key === "f") fit();
  else if (key === "p") oneToOne();
  else if (key === "+" || key === "=") zoomAt(1.25, stageSize().w / 2, stageSize().h / 2);
  else if (key === "-") zoomAt(0.8, stageSize().w / 2, stageSize().h / 2);
  else if (key === "q") later(() => cycleQueue(1));
  else if (key === "Q") later(() => cycleQueue(-1));
  else if (key === "?") help.hidden = !help.hidden;
  else if (key === "Escape") help.hidden = true;
  else handled = false;
  if (handled) event.preventDefault();
});

document.addEventListener("keyup", (event) => {
  if (event.key === " " && app.swapped) {
    app.swapped = false;
    renderPanes();
  }
});
window.addEventListener("blur", () => {
  if (app.swapped) {
    app.swapped = false;
    renderPanes();
  }
});

$("#queue").addEventListener("change", (event) => {
  later(() => openQueue(event.target.value));
  event.target.blur();
});
$("#help-button").addEventListener("click", (event) => {
  $("#help").hidden = !$("#help").hidden;
  event.target.blur();
});
$("#help").addEventListener("click", () => { $("#help").hidden = true; });

later(start);
