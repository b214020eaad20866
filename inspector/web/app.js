// inspector QA dashboard: the recipe in use (classes and colours, a switch for editors), live counters, rate chart,
// latency, alarms, reject gallery, threshold editing with a preview before Apply, audit history, login. Plain JS,
// no libraries, nothing fetched from the internet.
"use strict";

const $ = (id) => document.getElementById(id);
const GALLERY_SIZE = 12;
const CHART_POINTS = 120;

const state = {
  me: { authenticated: false, can_edit: false, login_to_view: false },
  thresholds: null, // as installed on the line
  classNames: [],
  draft: {}, // class name -> {min_confidence, min_area_px, max_count, enabled}
  previewKey: null, // the draft the preview on screen belongs to
  previewTimer: null,
  events: null,
  lastLedger: null,
  chart: [], // {t, parts, rejects}
  gallery: [],
  recipe: null, // GET /api/recipe: the active recipe, every recipe of the line, the last switch
  colours: {}, // recipe name -> class name -> #rrggbb
  started: false,
};
const FALLBACK_COLOUR = "#888888";

// ------------------------------------------------------------------------------------------------ helpers
async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
  if (init.body !== undefined && typeof init.body !== "string") {
    init.body = JSON.stringify(init.body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  let data = null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) data = await response.json();
  if (!response.ok) {
    const error = new Error(errorText(data) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function errorText(data) {
  if (!data || data.detail === undefined) return "";
  if (typeof data.detail === "string") return data.detail;
  if (Array.isArray(data.detail)) return data.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  return JSON.stringify(data.detail);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const fmtInt = (n) => (typeof n === "number" ? Math.round(n).toLocaleString("en-US") : "–");
const fmtMs = (n) => (typeof n === "number" ? n.toFixed(n < 10 ? 2 : 1) : "–");
const fmtTime = (ts) => {
  const d = new Date(ts * 1000);
  const today = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString("en-GB", { hour12: false });
  return today ? time : `${d.toISOString().slice(0, 10)} ${time}`;
};
const fmtValue = (v) => (typeof v === "number" ? String(Math.round(v * 1000) / 1000) : JSON.stringify(v));

// ------------------------------------------------------------------------------------------------- login
async function loadMe() {
  state.me = await api("/api/me");
  renderMe();
}

function renderMe() {
  const me = state.me;
  $("login-form").classList.toggle("hidden", me.authenticated);
  $("who").classList.toggle("hidden", !me.authenticated);
  $("who-name").textContent = me.authenticated ? `${me.username} · ${me.role}` : "";
  $("th-hint").textContent = me.can_edit ? "" : me.authenticated ? "viewers cannot change them" : "log in as an editor to change them";
  for (const input of document.querySelectorAll("#th-rows input")) input.disabled = !me.can_edit;
  $("recipe-switch").classList.toggle("hidden", !me.can_edit);
  if (!me.can_edit) $("locks").classList.add("hidden");
  updateApply();
}

// ------------------------------------------------------------------------------------------------ recipe
async function loadRecipe() {
  const data = await api("/api/recipe");
  state.recipe = data;
  for (const card of data.recipes) {
    state.colours[card.name] = Object.fromEntries(card.classes.map((c) => [c.name, c.colour]));
  }
  renderRecipe();
}

function renderRecipe() {
  const data = state.recipe;
  if (!data) return;
  const active = data.active;
  $("recipe-name").textContent = active.name;
  $("recipe-desc").textContent = active.description || "";
  $("recipe-classes").replaceChildren(...active.classes.map((c) => {
    const swatch = el("i", { class: "sw" });
    swatch.style.background = c.colour;
    return el("li", { "data-class": c.name }, swatch, el("span", { text: c.name }));
  }));
  const select = $("recipe-select");
  const chosen = select.value;
  select.replaceChildren(...data.recipes.map((card) => el("option", { value: card.name, text: card.name })));
  select.value = data.recipes.some((card) => card.name === chosen) && chosen !== active.name ? chosen : active.name;
  renderGallery(true);
}

function colourOf(recipe, className) {
  const own = state.colours[recipe] || {};
  const active = state.recipe ? state.colours[state.recipe.recipe] || {} : {};
  return own[className] || active[className] || FALLBACK_COLOUR;
}

$("recipe-apply").addEventListener("click", async () => {
  const name = $("recipe-select").value;
  $("recipe-apply").disabled = true;
  $("recipe-message").textContent = "";
  try {
    const done = await api("/api/recipe", { method: "POST", body: { recipe: name } });
    $("recipe-message").textContent = `Switched ${done.previous_recipe} → ${done.recipe} in ${done.switch_ms.toFixed(2)} ms` +
      (done.model_loaded ? " (model loaded)" : "");
    $("recipe-message").className = "message ok";
    await Promise.all([loadRecipe(), refreshThresholds()]);
  } catch (error) {
    $("recipe-message").textContent = error.message;
    $("recipe-message").className = "message error";
  } finally {
    $("recipe-apply").disabled = false;
  }
});

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  $("login-button").disabled = true;
  try {
    await api("/api/login", { method: "POST", body: { username: $("login-user").value, password: $("login-pass").value } });
    $("login-pass").value = "";
    await loadMe();
    if (!state.started) await start();
    else await loadLocks();
  } catch (error) {
    $("login-error").textContent = error.status === 401 ? "wrong user or password" : error.message;
  } finally {
    $("login-button").disabled = false;
  }
});

$("logout-button").addEventListener("click", async () => {
  await api("/api/logout", { method: "POST" });
  await loadMe();
  if (state.me.login_to_view) location.reload();
});

// ---------------------------------------------------------------------------------------------- counters
function renderStats(stats) {
  const ledger = stats.ledger || {};
  $("c-seen").textContent = fmtInt(ledger.seen);
  $("c-decided").textContent = fmtInt(ledger.decided);
  $("c-passed").textContent = fmtInt(ledger.passed);
  $("c-rejected").textContent = fmtInt(ledger.rejected);
  $("c-failsafe").textContent = fmtInt(ledger.failsafe);
  $("c-inflight").textContent = fmtInt(ledger.in_flight);
  const lost = (ledger.frames_dropped || 0) + (ledger.errors || 0);
  $("c-dropped").textContent = ledger.frames_dropped === undefined && ledger.errors === undefined ? "–" : fmtInt(lost);
  $("c-yield").textContent = typeof stats.yield === "number" ? `${(stats.yield * 100).toFixed(1)} %` : "–";
  // The counters above are this run's (they start at 0 with every start of the inspector); the store's are all
  // runs' (what retention kept).
  $("c-scope").textContent = typeof stats.run === "number" ? `this run (run ${stats.run})` : "this run";
  const all = stats.cumulative || {};
  $("c-cumulative").textContent = typeof all.decided === "number"
    ? `All runs (stored): ${fmtInt(all.decided)} decided · ${fmtInt(all.passed)} passed · ` +
      `${fmtInt(all.rejected)} rejected` + (all.runs > 1 ? ` over ${fmtInt(all.runs)} runs` : "")
    : "";

  const lat = stats.latency_ms || {};
  for (const key of ["p50", "p95", "p99", "max"]) $(`l-${key}`).textContent = fmtMs(lat[key]);

  renderStages(stats);
  renderModel(stats.model || {});

  const alarms = $("alarms");
  alarms.replaceChildren();
  const list = stats.alarms || [];
  if (!list.length) alarms.append(el("li", { class: "muted", text: "No alarms" }));
  for (const alarm of list) {
    const text = typeof alarm === "string" ? alarm : `${alarm.name || "alarm"}: ${alarm.message || ""}`;
    const since = alarm && typeof alarm.since === "number" ? ` (since ${fmtTime(alarm.since)})` : "";
    alarms.append(el("li", { class: "alarm", text: text + since }));
  }

  const perClass = $("per-class");
  perClass.replaceChildren();
  const entries = Object.entries(stats.per_class_rejects || {}).sort((a, b) => b[1] - a[1]);
  const most = Math.max(1, ...entries.map((e) => e[1]));
  if (!entries.length) perClass.append(el("li", { class: "muted", text: "none yet" }));
  for (const [name, count] of entries) {
    const bar = el("span", { class: "bar" });
    bar.style.width = `${(100 * count) / most}%`;
    perClass.append(el("li", {}, el("span", { class: "name", text: name }), el("span", { class: "track" }, bar),
      el("span", { class: "num", text: fmtInt(count) })));
  }

  pushRate(stats);
  if (state.recipe && stats.recipe && stats.recipe !== state.recipe.recipe) {
    // Switched (by the PLC or another editor): the classes, colours and thresholds are the new recipe's.
    state.recipe.recipe = stats.recipe;
    loadRecipe();
    refreshThresholds();
  } else if (state.thresholds && stats.thresholds_version !== state.thresholds.version) refreshThresholds();
}

// p50 / p99 of each pipeline stage, in the server's (pipeline) order. `register` (to the golden reference) only when
// the active recipe has a reference: otherwise it has no samples and would read as a free stage.
function renderStages(stats) {
  const stages = stats.stage_ms || {};
  const hasReference = Boolean((stats.model || {}).reference);
  const names = Object.keys(stages).filter((name) => name !== "register" || hasReference);
  if (!names.length) return;
  $("stage-rows").replaceChildren(...names.map((name) => el("tr", { "data-testid": `stage-${name}` },
    el("td", { text: name }), el("td", { text: fmtMs(stages[name].p50) }), el("td", { text: fmtMs(stages[name].p99) }))));
}

// What the line inspects with: file, precision, the execution provider actually in use (a CUDA request that fell
// back to CPU shows here) and the self-test's verdict on this host.
function renderModel(model) {
  $("m-file").textContent = model.file ? `${model.file}${model.fallback ? " (fallback)" : ""}` : "–";
  $("m-file").title = model.sha256 ? `sha256 ${model.sha256}` : "";
  $("m-precision").textContent = model.precision || "–";
  const provider = (model.provider || "–").replace("ExecutionProvider", "");
  const asked = ((model.requested_providers || [])[0] || "").replace("ExecutionProvider", "");
  $("m-provider").textContent = model.provider_fallback ? `${provider} (asked for ${asked})` : provider;
  $("m-provider").className = model.provider_fallback ? "warn" : "";
  const selftest = model.selftest || {};
  $("m-selftest").textContent = selftest.status || "–";
  $("m-selftest").title = selftest.summary || "";
  $("m-selftest").className = { passed: "ok", failed: "bad" }[selftest.status] || "warn";
}

function pushRate(stats) {
  const now = Date.now() / 1000;
  const ledger = stats.ledger || {};
  const rates = stats.rates || {};
  let parts = rates.parts_per_s;
  let rejects = rates.rejects_per_s;
  if (typeof parts !== "number" && state.lastLedger && typeof ledger.decided === "number") {
    // No rates from the pipeline: differentiate the counters.
    const dt = Math.max(1e-3, now - state.lastLedger.t);
    parts = Math.max(0, (ledger.decided - state.lastLedger.decided) / dt);
    rejects = Math.max(0, ((ledger.rejected || 0) - state.lastLedger.rejected) / dt);
  }
  state.lastLedger = { t: now, decided: ledger.decided || 0, rejected: ledger.rejected || 0 };
  if (typeof parts !== "number") return;
  state.chart.push({ t: now, parts, rejects: typeof rejects === "number" ? rejects : 0 });
  if (state.chart.length > CHART_POINTS) state.chart.shift();
  drawChart();
}

function drawChart() {
  const canvas = $("rate-chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const left = 34, right = 6, top = 6, bottom = 16;
  const w = width - left - right, h = height - top - bottom;
  const points = state.chart;
  const max = niceMax(Math.max(1, ...points.map((p) => Math.max(p.parts, p.rejects))));
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#667";
  ctx.strokeStyle = "#e3e6ec";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + h - (h * i) / 4;
    ctx.beginPath();
    ctx.moveTo(left, Math.round(y) + 0.5);
    ctx.lineTo(left + w, Math.round(y) + 0.5);
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillText(String(Math.round(((max * i) / 4) * 100) / 100), left - 4, y + 4);
  }
  ctx.textAlign = "left";
  ctx.fillText(`last ${CHART_POINTS} updates`, left, height - 3);
  const series = [["parts", "#2f6fde"], ["rejects", "#d6402b"]];
  for (const [key, color] of series) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => {
      const x = left + (w * (i + CHART_POINTS - points.length)) / (CHART_POINTS - 1);
      const y = top + h - (h * p[key]) / max;
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

function niceMax(value) {
  // Four grid steps of 1, 2 or 5 times a power of ten, so that the axis labels read well.
  const raw = value / 4;
  const exp = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const step of [1, 2, 5, 10]) if (step * exp >= raw) return 4 * step * exp;
  return 40 * exp;
}

// ----------------------------------------------------------------------------------------------- gallery
async function loadGallery() {
  const page = await api(`/api/verdicts?decision=reject&limit=${GALLERY_SIZE}`);
  state.gallery = page.items;
  renderGallery();
}

function addVerdict(verdict) {
  if (verdict.decision !== "reject") return;
  if (state.gallery.some((v) => v.id === verdict.id)) return;
  state.gallery.unshift(verdict);
  state.gallery.length = Math.min(state.gallery.length, GALLERY_SIZE);
  renderGallery();
}

// Keyed by verdict (store) id, as part ids may repeat across runs: tiles already shown are kept (their images stay loaded), new ones are added in order and
// those no longer among the newest GALLERY_SIZE are dropped. Rebuilding every <img> would flash the gallery.
function renderGallery(recolour = false) {
  const gallery = $("gallery");
  if (recolour) { // the recipe's colours arrived or changed: the tags already shown take them
    for (const tag of gallery.querySelectorAll("figure.shot .tag")) {
      tag.style.borderColor = tag.style.color = colourOf(tag.closest("figure").dataset.recipe, tag.textContent);
    }
  }
  const shown = new Map();
  for (const node of gallery.querySelectorAll(":scope > figure.shot")) shown.set(node.dataset.verdict, node);
  const wanted = state.gallery.slice(0, GALLERY_SIZE).map((v) => shown.get(String(v.id)) || galleryTile(v));
  const keep = new Set(wanted);
  for (const node of [...gallery.children]) if (!keep.has(node)) node.remove();
  // Put the tiles in order, moving only those out of place (new tiles go in before the older ones).
  wanted.forEach((node, i) => {
    if (gallery.children[i] !== node) gallery.insertBefore(node, gallery.children[i] || null);
  });
  if (!wanted.length) gallery.append(el("p", { class: "muted", text: "No rejects yet." }));
  $("gallery-note").textContent = wanted.length ? `newest ${wanted.length}` : "";
}

function galleryTile(v) {
  const picture = v.image_url
    ? el("img", { src: `${v.image_url}?width=360`, alt: `part ${v.part_id}`, loading: "lazy" })
    : el("div", { class: "noimg", text: "no image kept" });
  const tags = v.reasons.length ? v.reasons.map((r) => {
    const tag = el("span", { class: "tag", text: r });
    tag.style.borderColor = tag.style.color = colourOf(v.recipe, r);
    return tag;
  }) : [el("span", { text: "—" })];
  return el("figure", { class: "shot", "data-verdict": v.id, "data-part": v.part_id, "data-recipe": v.recipe,
    onclick: () => openViewer(v.id) },
    picture,
    el("figcaption", {},
      el("span", { class: "reasons" }, ...tags),
      el("span", { class: "meta", text: `#${v.part_id} · v${v.thresholds_version} · ${v.recipe} · ${fmtTime(v.ts)}` })));
}

// A verdict by its store id (`id`): part ids alone may name parts of several runs.
async function openViewer(verdictId) {
  const dialog = $("viewer");
  const text = $("viewer-text");
  text.textContent = "loading…";
  $("viewer-img").removeAttribute("src");
  dialog.showModal();
  try {
    const v = await api(`/api/verdicts/${verdictId}`);
    if (v.image_url) $("viewer-img").src = v.image_url;
    text.replaceChildren(
      el("p", { text: `Part #${v.part_id} (run ${v.run}): ${v.decision.toUpperCase()} (${v.reasons.join(", ") || "no defect"}), ` +
        `thresholds v${v.thresholds_version}, ${fmtMs(v.latency_ms)} ms, ${fmtTime(v.ts)}` }),
      el("ul", {}, ...v.detections.map((d) => el("li", { class: d.kept ? "kept" : "muted",
        text: `${d.class_name} ${d.confidence.toFixed(2)} at [${d.xyxy.map((x) => Math.round(x)).join(", ")}]` +
          (d.kept ? "" : " (below the thresholds)") }))));
  } catch (error) {
    text.textContent = error.message;
  }
}

// -------------------------------------------------------------------------------------------- thresholds
function ruleFor(thresholds, name) {
  return thresholds.classes[name] || thresholds.default;
}

async function refreshThresholds() {
  if (state.refreshing) return;
  state.refreshing = true;
  try {
    const data = await api("/api/thresholds");
    const moved = state.thresholds && data.thresholds.version !== state.thresholds.version;
    const dirty = isDirty();
    state.classNames = data.class_names;
    state.thresholds = data.thresholds;
    $("version-pill").textContent = `thresholds v${data.thresholds.version}`;
    $("th-version").textContent = `v${data.thresholds.version}`;
    if (!dirty || !state.rowsBuilt) buildRows();
    else if (moved) message(`The line moved to v${data.thresholds.version}; your edit was made on an older version. Reset to start over.`, "warn");
    if (moved) loadAudit();
  } finally {
    state.refreshing = false;
  }
}

function buildRows() {
  const rows = $("th-rows");
  rows.replaceChildren(
    el("div", { class: "th-head" },
      el("span", { text: "class" }), el("span", { text: "min confidence" }), el("span", { text: "" }),
      el("span", { text: "min area" }), el("span", { text: "max n" }), el("span", { text: "on" })));
  state.draft = {};
  for (const name of state.classNames) {
    const rule = ruleFor(state.thresholds, name);
    state.draft[name] = { ...rule };
    const value = el("output", { class: "val", text: rule.min_confidence.toFixed(2) });
    const slider = el("input", { type: "range", min: 0, max: 1, step: 0.01, value: rule.min_confidence,
      "aria-label": `${name} min confidence`, "data-class": name, "data-testid": `slider-${name}` });
    slider.value = rule.min_confidence;
    slider.addEventListener("input", () => {
      state.draft[name].min_confidence = Number(slider.value);
      value.textContent = Number(slider.value).toFixed(2);
      changed();
    });
    const area = el("input", { type: "number", min: 0, step: 1, value: rule.min_area_px, "aria-label": `${name} min area` });
    area.addEventListener("input", () => {
      state.draft[name].min_area_px = Math.max(0, Number(area.value) || 0);
      changed();
    });
    const count = el("input", { type: "number", min: 0, step: 1, value: rule.max_count, "aria-label": `${name} max count` });
    count.addEventListener("input", () => {
      state.draft[name].max_count = Math.max(0, Math.floor(Number(count.value) || 0));
      changed();
    });
    const enabled = el("input", { type: "checkbox", "aria-label": `${name} enabled` });
    enabled.checked = rule.enabled;
    enabled.addEventListener("change", () => {
      state.draft[name].enabled = enabled.checked;
      changed();
    });
    rows.append(el("div", { class: "th-row" }, el("span", { class: "name", text: name }), slider, value, area, count, enabled));
  }
  state.rowsBuilt = true;
  state.previewKey = null;
  $("preview").textContent = "Move a slider to see what it would have done.";
  $("preview").className = "preview muted";
  renderMe();
}

function proposed() {
  const t = state.thresholds;
  const classes = { ...t.classes };
  for (const name of state.classNames) {
    const rule = state.draft[name];
    if (!rule) continue;
    // Keep the class on `default` unless its rule now differs from it (or it already had its own).
    if (t.classes[name] || !sameRule(rule, t.default)) classes[name] = { ...rule };
  }
  return { default: t.default, classes, roi: t.roi, on_error: t.on_error };
}

function sameRule(a, b) {
  return a.min_confidence === b.min_confidence && a.min_area_px === b.min_area_px &&
    a.max_count === b.max_count && a.enabled === b.enabled;
}

function isDirty() {
  if (!state.thresholds) return false;
  return state.classNames.some((name) => state.draft[name] && !sameRule(state.draft[name], ruleFor(state.thresholds, name)));
}

function changed() {
  message("");
  updateApply();
  clearTimeout(state.previewTimer);
  if (!isDirty()) {
    state.previewKey = null;
    $("preview").textContent = "No change from the line's thresholds.";
    $("preview").className = "preview muted";
    return;
  }
  $("preview").textContent = "previewing…";
  state.previewTimer = setTimeout(runPreview, 250);
}

async function runPreview() {
  const body = proposed();
  const key = JSON.stringify(body);
  try {
    const result = await api("/api/thresholds/preview", { method: "POST", body: { thresholds: body } });
    if (key !== JSON.stringify(proposed())) return; // the sliders moved on meanwhile
    renderPreview(result);
    state.previewKey = key;
  } catch (error) {
    $("preview").textContent = `Preview failed: ${error.message}`;
    $("preview").className = "preview error";
    state.previewKey = null;
  }
  updateApply();
}

function renderPreview(r) {
  const box = $("preview");
  box.className = "preview";
  const summary = el("p", { class: "summary" },
    el("b", { text: `Last ${r.parts} parts: ` }),
    el("span", { class: r.to_reject ? "bad" : "", text: `${r.to_reject} would now be rejected` }), ", ",
    el("span", { class: r.to_pass ? "good" : "", text: `${r.to_pass} would now pass` }), ".");
  const totals = el("p", { class: "muted small",
    text: `Rejects ${r.current.reject} → ${r.proposed.reject} (of ${r.parts})` +
      (r.skipped_failsafe ? `; ${r.skipped_failsafe} fail-safe parts not re-decided` : "") });
  const flips = el("ul", { class: "flips" }, ...r.flips.slice(0, 8).map((f) =>
    el("li", { onclick: () => openViewer(f.id), title: "show the part" },
      el("span", { text: `#${f.part_id} ` }),
      el("span", { class: f.now === "reject" ? "bad" : "good", text: `${f.was} → ${f.now}` }),
      el("span", { class: "muted", text: ` ${(f.now === "reject" ? f.reasons_now : f.reasons_was).join(", ")}` }))));
  if (r.flips.length > 8) flips.append(el("li", { class: "muted", text: `… ${r.flips.length - 8} more` }));
  box.replaceChildren(summary, totals, flips);
}

function updateApply() {
  const ready = state.me.can_edit && isDirty() && state.previewKey !== null && state.previewKey === JSON.stringify(proposed());
  $("th-apply").disabled = !ready;
  $("th-apply").title = !state.me.can_edit ? "needs the editor role" : !isDirty() ? "nothing changed" :
    ready ? "install these thresholds on the line" : "wait for the preview";
}

$("th-apply").addEventListener("click", async () => {
  $("th-apply").disabled = true;
  try {
    const data = await api("/api/thresholds", {
      method: "PUT",
      body: { version: state.thresholds.version, thresholds: proposed(), comment: $("th-comment").value },
    });
    state.thresholds = data.thresholds;
    $("version-pill").textContent = `thresholds v${data.thresholds.version}`;
    $("th-version").textContent = `v${data.thresholds.version}`;
    $("th-comment").value = "";
    buildRows();
    message(`Applied: the line now uses v${data.thresholds.version}.`, "ok");
    await loadAudit();
  } catch (error) {
    message(error.status === 409 ? `Not applied: ${error.message}. Reset and edit again.` : `Not applied: ${error.message}`, "error");
    updateApply();
  }
});

$("th-reset").addEventListener("click", async () => {
  message("");
  state.rowsBuilt = false;
  await refreshThresholds();
});

function message(text, kind = "") {
  $("th-message").textContent = text;
  $("th-message").className = `message ${kind}`;
}

// ------------------------------------------------------------------------------------------------- audit
async function loadAudit() {
  const page = await api("/api/audit?limit=30");
  const body = $("audit-rows");
  body.replaceChildren();
  for (const row of page.items) {
    const version = row.new_version ? (row.old_version ? `v${row.old_version}→v${row.new_version}` : `v${row.new_version}`) : "";
    const changes = row.changes.length
      ? row.changes.map((c) => `${c.field}: ${fmtValue(c.old)} → ${fmtValue(c.new)}`).join("; ")
      : row.action.replace("thresholds.", "");
    body.append(el("tr", { "data-testid": "audit-row" },
      el("td", { class: "nowrap", text: fmtTime(row.ts) }),
      el("td", { class: "nowrap", text: row.user }),
      el("td", { class: "nowrap", text: version }),
      el("td", {}, el("span", { text: changes }), row.comment ? el("div", { class: "comment", text: row.comment }) : null)));
  }
  if (!page.items.length) body.append(el("tr", {}, el("td", { colspan: 4, class: "muted", text: "No changes yet." })));
  await loadLocks();
}

// Editors: accounts and addresses with failed logins (locked or in back-off), each with an Unlock button.
async function loadLocks() {
  const box = $("locks");
  if (!state.me.can_edit) {
    box.classList.add("hidden");
    return;
  }
  let page;
  try {
    page = await api("/api/login-locks");
  } catch {
    box.classList.add("hidden"); // e.g. the session ended: the audit itself still shows
    return;
  }
  const body = $("lock-rows");
  body.replaceChildren();
  for (const lock of page.items) {
    const path = `/api/login-locks/${lock.kind === "account" ? "accounts" : "addresses"}/${encodeURIComponent(lock.name)}`;
    const unlock = async () => {
      await api(path, { method: "DELETE" });
      await loadAudit();
    };
    const status = `${lock.failures} failed${lock.locked ? `, locked ${Math.ceil(lock.retry_after_s / 60)} min` : ""}`;
    body.append(el("tr", { "data-testid": "lock-row" },
      el("td", { class: "nowrap", text: lock.kind }),
      el("td", { text: lock.name }),
      el("td", { class: "nowrap", text: status }),
      el("td", {}, el("button", { type: "button", class: "secondary", "data-testid": "unlock", onclick: unlock, text: "Unlock" }))));
  }
  box.classList.toggle("hidden", !page.items.length);
}

// ------------------------------------------------------------------------------------------- live updates
function connectEvents() {
  if (state.events) state.events.close();
  const source = new EventSource("/api/events");
  state.events = source;
  source.onopen = () => setLive(true);
  source.onerror = () => setLive(false);
  source.addEventListener("stats", (e) => renderStats(JSON.parse(e.data)));
  source.addEventListener("verdict", (e) => addVerdict(JSON.parse(e.data)));
  source.addEventListener("thresholds", (e) => {
    const t = JSON.parse(e.data);
    if (!state.thresholds || t.version !== state.thresholds.version) refreshThresholds();
  });
}

function setLive(on) {
  $("live").textContent = on ? "live" : "offline";
  $("live").className = `live ${on ? "on" : "off"}`;
}

async function start() {
  try {
    await loadRecipe();
    await Promise.all([refreshThresholds(), loadGallery(), loadAudit(), api("/api/stats").then(renderStats)]);
  } catch (error) {
    if (error.status === 401) {
      $("locked").classList.remove("hidden");
      $("main").classList.add("hidden");
      return;
    }
    throw error;
  }
  $("locked").classList.add("hidden");
  $("main").classList.remove("hidden");
  state.started = true;
  connectEvents();
}

window.addEventListener("resize", drawChart);
drawChart(); // the empty axes until the first stats arrive
loadMe().then(start).catch((error) => message(`Could not load the dashboard: ${error.message}`, "error"));
