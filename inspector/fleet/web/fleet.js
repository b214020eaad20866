// inspector plant view: polls /api/fleet once a second and draws the lines, the plant totals by recipe and the
// shifts. Plain JS, no libraries, nothing fetched from the internet.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const fmtInt = (n) => (typeof n === "number" ? Math.round(n).toLocaleString("en-US") : "–");
const fmtPct = (x) => (typeof x === "number" ? `${(x * 100).toFixed(1)} %` : "–");
const fmtRate = (x) => (typeof x === "number" ? x.toFixed(1) : "–");
const fmtMs = (x) => (typeof x === "number" ? x.toFixed(x < 10 ? 2 : 1) : "–");
const td = (text, cls) => el("td", { class: cls, text });
const num = (text) => td(text, "num");

function stateCell(row) {
  const silent = typeof row.silent_s === "number" ? `silent ${row.silent_s.toFixed(1)} s` : "never heard";
  const title = `${row.status}${row.reason ? ` (${row.reason})` : ""}; ${silent}; heartbeat every ${row.heartbeat_s} s`;
  return el("td", {}, el("span", { class: `state ${row.state}`, "data-testid": `state-${row.key}`, title, text: row.state }));
}

function readyText(row) {
  if (row.ready === null || row.ready === undefined) return "–";
  if (row.paused) return "paused";
  return row.ready ? "ready" : "not ready";
}

function alarmsCell(row) {
  if (!row.alarms.length) return td("–", "muted");
  const cell = el("td", { "data-testid": `alarms-${row.key}` });
  for (const alarm of row.alarms) {
    cell.append(el("div", { class: `alarm ${alarm.level}`, title: alarm.message, text: alarm.message }));
  }
  return cell;
}

function dashboardCell(row) {
  if (!row.dashboard_url) return td("–", "muted");
  return el("td", {}, el("a", { href: row.dashboard_url, target: "_blank", rel: "noopener", "data-testid": `link-${row.key}`, text: "open" }));
}

function renderRows(lines) {
  const body = $("rows");
  if (!lines.length) return;
  const rows = lines.map((row) => {
    const model = row.model || {};
    const modelText = model.file ? `${model.file}${model.precision ? ` (${model.precision})` : ""}` : "–";
    return el(
      "tr",
      { class: row.state, "data-testid": `row-${row.key}`, "data-state": row.state },
      td(row.line),
      td(row.camera),
      stateCell(row),
      td(readyText(row), row.ready ? "good" : row.ready === false && !row.paused ? "bad" : ""),
      td(row.recipe || "–"),
      el("td", { class: "model-cell", title: `${modelText} ${model.provider || ""} ${model.sha256 || ""}`, text: modelText }),
      el("td", { class: "num", "data-testid": `rate-${row.key}`, text: fmtRate(row.rate) }),
      el("td", { class: "num", "data-testid": `parts-${row.key}`, text: fmtInt(row.decided) }),
      num(fmtPct(row.yield)),
      num(fmtInt(row.failsafe)),
      num(fmtMs(row.p99_ms)),
      alarmsCell(row),
      dashboardCell(row),
    );
  });
  body.replaceChildren(...rows);
}

function countsRow(label, c, cls, testid) {
  return el(
    "tr",
    { class: cls, "data-testid": testid },
    td(label),
    num(fmtInt(c.parts)),
    num(fmtInt(c.rejected)),
    num(fmtPct(c.yield)),
    num(fmtInt(c.failsafe)),
    num(c.scored ? fmtInt(c.escapes) : "–"),
    num(fmtInt(c.scored)),
  );
}

function renderRecipes(data) {
  const rows = Object.entries(data.recipes).map(([name, c]) => countsRow(name, c, "", `recipe-${name}`));
  if (rows.length) rows.push(countsRow("plant", data.plant, "current", "recipe-total"));
  $("recipe-rows").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No parts yet." }))]));
}

function renderShifts(data) {
  $("shift-starts").textContent = `starts ${data.shift_starts} (local time)`;
  const rows = [];
  for (const shift of data.shifts) {
    const t = shift.total;
    rows.push(
      el(
        "tr",
        { class: shift.current ? "current" : "", "data-testid": shift.current ? "shift-current" : undefined },
        td(shift.name + (shift.current ? " (now)" : "")),
        td("all"),
        num(fmtInt(t.parts)),
        num(fmtInt(t.rejected)),
        num(fmtPct(t.yield)),
        num(t.scored ? fmtInt(t.escapes) : "–"),
      ),
    );
    const subs = [...Object.entries(shift.recipes).map(([n, c]) => [`recipe ${n}`, c]), ...Object.entries(shift.lines)];
    for (const [name, c] of subs) {
      rows.push(el("tr", { class: "sub" }, td(""), td(name), num(fmtInt(c.parts)), num(fmtInt(c.rejected)), num(fmtPct(c.yield)), num(c.scored ? fmtInt(c.escapes) : "–")));
    }
  }
  $("shift-rows").replaceChildren(...rows);
}

function render(data) {
  $("broker").textContent = `broker ${data.broker}`;
  for (const state of ["online", "stale", "offline"]) $(`count-${state}`).textContent = `${state} ${data.counts[state]}`;
  renderRows(data.lines);
  renderRecipes(data);
  renderShifts(data);
}

function setLive(on, text) {
  const live = $("live");
  live.className = `live ${on ? "on" : "off"}`;
  live.textContent = text;
}

async function poll() {
  try {
    const response = await fetch("/api/fleet", { cache: "no-store" });
    if (!response.ok) throw new Error(`${response.status}`);
    const data = await response.json();
    render(data);
    setLive(data.connected, data.connected ? "live" : "broker lost");
  } catch (err) {
    setLive(false, "offline");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
