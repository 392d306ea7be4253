// The seawall console page: renders the state the server pushes over SSE.
// Everything from the system (names, errors, bodies) goes in as text, never as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);
let current = null;
let shown = null; // key of the dead letter whose details are open

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function notice(text, kind) {
  const box = $("#notice");
  box.textContent = text;
  box.className = kind || "";
}

function renderServices(services) {
  $("#service-count").textContent = `${services.length} running`;
  fill($("#services tbody"), services.map((s) => el("tr", { "data-service": s.name },
    el("td", { class: "name" }, s.name),
    el("td", {}, s.instances.length),
    el("td", { class: s.healthy ? "ok" : "bad" }, s.healthy ? "healthy" : "unhealthy"),
    el("td", {}, s.rate),
    el("td", {}, s.p50_ms.toFixed(1)),
    el("td", {}, s.p99_ms.toFixed(1)),
    el("td", {}, s.handled),
    el("td", {}, s.failed),
    el("td", { class: s.dead_lettered ? "warn" : "" }, s.dead_lettered),
    el("td", { class: s.restarts ? "warn" : "" }, s.restarts),
    el("td", {}, s.breakers.map((b) => `${b.target}: ${b.state}`).join(", ") || "—"),
  )));
}

function renderChannels(channels) {
  $("#channel-count").textContent = `${channels.length} in use`;
  fill($("#channels tbody"), channels.map((c) => el("tr", { "data-channel": c.name },
    el("td", { class: "name" }, c.name),
    el("td", {}, c.senders.join(", ") || "—"),
    el("td", {}, Object.entries(c.groups).map(([g, m]) => `${g} (${m.join(", ")})`).join("; ") || "—"),
    el("td", {}, c.rate),
    el("td", {}, c.in_flight),
  )));
}

const NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Three columns: services that send, channels, services that handle.
function renderTopology(topology) {
  const box = $("#topology");
  const services = topology.services.map((s) => s.name);
  const channels = topology.channels.map((c) => c.name);
  const rowH = 26, top = 20, width = 900;
  const cols = { from: 20, channel: 360, to: 700 };
  const rows = Math.max(services.length, channels.length, 1);
  box.setAttribute("viewBox", `0 0 ${width} ${top + rows * rowH + 10}`);
  box.setAttribute("height", top + rows * rowH + 10);
  const y = (i) => top + i * rowH;
  const nodes = [];
  const at = {};
  services.forEach((s, i) => { at["from:" + s] = y(i); at["to:" + s] = y(i); });
  channels.forEach((c, i) => { at["ch:" + c] = y(i); });
  for (const a of topology.arrows) {
    const sending = a.kind === "sends";
    const x1 = sending ? cols.from + 170 : cols.channel + 250;
    const y1 = sending ? at["from:" + a.from] : at["ch:" + a.from];
    const x2 = sending ? cols.channel : cols.to;
    const y2 = sending ? at["ch:" + a.to] : at["to:" + a.to];
    nodes.push(svg("line", { x1, y1: y1 - 4, x2: x2 - 4, y2: y2 - 4, class: "arrow " + a.kind,
      "marker-end": "url(#head)" }));
  }
  const label = (x, yy, text, cls) => nodes.push(svg("text", { x, y: yy, class: cls }, text));
  services.forEach((s) => label(cols.from, at["from:" + s], s, "service"));
  channels.forEach((c) => label(cols.channel + 6, at["ch:" + c], c, "channel"));
  services.forEach((s) => label(cols.to + 6, at["to:" + s], s, "service"));
  const defs = svg("defs", {});
  const marker = svg("marker", { id: "head", markerWidth: 8, markerHeight: 8, refX: 7, refY: 4,
    orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L8,4 L0,8 z", class: "head" }));
  defs.append(marker);
  box.replaceChildren(defs, ...nodes);
}

function renderDeadLetters(letters) {
  const total = current ? current.dead_letter_count : letters.length;
  const more = total > letters.length ? ` (the first ${letters.length} shown)` : "";
  $("#dead-count").textContent = `${total} waiting${more}`;
  fill($("#dead-letters tbody"), letters.map((d) => {
    const show = el("button", { class: "show", type: "button" }, "show");
    show.onclick = () => { shown = shown === d.key ? null : d.key; renderDetails(); };
    const redrive = el("button", { class: "redrive", type: "button" }, "redrive");
    redrive.onclick = () => act("redrive", d);
    const purge = el("button", { class: "purge", type: "button" }, "purge");
    purge.onclick = () => { if (confirm(`Drop dead letter ${d.envelope.id} for good?`)) act("purge", d); };
    return el("tr", { "data-key": d.key, "data-id": d.envelope.id, "data-dlq": d.dlq },
      el("td", {}, d.dlq),
      el("td", { class: "name" }, d.envelope.type),
      el("td", { class: "id" }, d.envelope.id),
      el("td", { class: "warn" }, d.reason),
      el("td", { class: "error" }, d.error),
      el("td", {}, d.attempts),
      el("td", {}, d.at.replace("T", " ").slice(0, 19)),
      el("td", { class: "actions" }, show, redrive, purge));
  }));
  renderDetails();
}

function renderDetails() {
  const box = $("#letter");
  const letter = current && current.dead_letters.find((d) => d.key === shown);
  box.hidden = !letter;
  if (letter) box.textContent = JSON.stringify(letter, null, 2);
}

async function act(action, letter) {
  const token = $("#token").value;
  const headers = { "Content-Type": "application/json" };
  if (token) headers["X-Seawall-Token"] = token;
  const response = await fetch(`/api/dlq/${action}`, {
    method: "POST", headers, body: JSON.stringify({ dlq: letter.dlq, keys: [letter.key] }),
  });
  const answer = await response.json();
  if (response.ok) {
    const verb = action === "redrive" ? `sent back to ${letter.channel}` : "purged";
    notice(`${answer.done.length} dead letter(s) ${verb}`, "ok");
  } else {
    notice(answer.error, "bad");
  }
}

// A section is drawn again only when what it shows changed, so that a button is not
// replaced under the pointer once a second.
const drawn = {};
function redraw(name, data, draw) {
  const text = JSON.stringify(data);
  if (drawn[name] === text) return;
  drawn[name] = text;
  draw(data);
}

function render(state) {
  current = state;
  $("#where").textContent = state.where;
  $("#operator").hidden = !state.operator;
  $("#readonly").hidden = state.operator;
  redraw("topology", state.topology, renderTopology);
  redraw("services", state.topology.services, renderServices);
  redraw("channels", state.topology.channels, renderChannels);
  redraw("dead", [state.dead_letter_count, state.dead_letters], () => renderDeadLetters(state.dead_letters));
}

function connect() {
  const source = new EventSource("/api/events");
  source.onopen = () => { $("#live").textContent = "live"; $("#live").className = "live on"; };
  source.onmessage = (event) => render(JSON.parse(event.data));
  source.onerror = () => { $("#live").textContent = "reconnecting…"; $("#live").className = "live off"; };
}

connect();
