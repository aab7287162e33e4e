// flowd's page: the service graph, the flows table and the policy board, all from the JSON the
// agent (or the relay) serves. Everything shown is built with textContent, never parsed as
// HTML: pod names, labels and process names come from the cluster and are not trusted.
"use strict";

const COLOURS = {
  VERDICT_DENIED: "#d62728",
  VERDICT_DROPPED: "#ff7f0e",
  VERDICT_NOT_ENFORCED: "#9467bd",
  VERDICT_FORWARDED: "#2ca02c",
  VERDICT_UNSPECIFIED: "#9aa0a6",
};
const VERDICT_WORDS = {
  VERDICT_DENIED: "denied",
  VERDICT_DROPPED: "dropped",
  VERDICT_NOT_ENFORCED: "not enforced",
  VERDICT_FORWARDED: "forwarded",
  VERDICT_UNSPECIFIED: "unknown",
};
const SEVERITY = ["VERDICT_DENIED", "VERDICT_DROPPED", "VERDICT_NOT_ENFORCED", "VERDICT_FORWARDED"];
// The edge layer's drawing order: the worst verdicts last, on top.
const PAINT_ORDER = ["VERDICT_UNSPECIFIED", ...SEVERITY.slice().reverse()];
// Above this many graph nodes the force layout is too slow for an interactive page.
const FORCE_LAYOUT_LIMIT = 300;
// Above this many workloads the graph opens with every namespace collapsed (one node each, edges
// between them folded): drawing thousands of nodes in their groups takes seconds, and nobody
// reads them at once. A click opens a namespace; "expand all" opens every one.
const COLLAPSE_NODE_COUNT = 300;
// Above this many edges, cytoscape draws only the nodes, placed in a block per namespace; the
// edges go straight and without labels (the panel has them) on a canvas of their own under
// cytoscape's. At 10,000 edges cytoscape spends seconds placing and painting edge elements
// (and compound parents double it); a canvas path of them takes milliseconds.
const LARGE_EDGE_COUNT = 1000;
// The large graph's blocks: a cell per node (room for its label), and space between blocks.
const CELL_WIDTH = 150;
const CELL_HEIGHT = 60;
const BLOCK_GAP = 80;
// How near (screen pixels) a click must be to a canvas edge to pick it.
const EDGE_PICK_DISTANCE = 6;
const TABLE_ROWS = 500;
// Flows read for one edge's panel, and edge sections whose flows load without a click.
const EDGE_FLOWS = 200;
const EDGE_SECTIONS_LOADED = 5;

const state = {
  graph: null,
  collapsed: new Set(),
  hidden: new Set(),
  cy: null,
  follow: null,
  policies: new Map(),
  timings: {},
  // Edges drawn by the last draw (cytoscape's, or the edge layer's for a large graph).
  drawnEdges: 0,
  edgeLayer: null,
  // Whether the user chose what is collapsed (then a reload keeps it).
  chosen: false,
  // Bumped by every load; answers of an older one are dropped.
  generation: 0,
};

// ---- small DOM helpers ------------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (key === "data") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A record's time as the table shows it (local time of day); the full time is its title.
function timeCell(text) {
  const time = new Date(text || 0);
  const shown = Number.isNaN(time.getTime()) ? "" : time.toLocaleTimeString("en-GB", { hour12: false }) + "." + String(time.getMilliseconds()).padStart(3, "0");
  return el("td", { title: text || "" }, shown);
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

const num = (v) => Number(v || 0);
const fmt = (v) => num(v).toLocaleString("en");

function bytes(v) {
  let n = num(v);
  for (const unit of ["B", "KiB", "MiB", "GiB"]) {
    if (n < 1024 || unit === "GiB") return `${unit === "B" ? n : n.toFixed(1)} ${unit}`;
    n /= 1024;
  }
  return `${n} B`;
}

// ---- requests ---------------------------------------------------------------------------

// Whether RFC 3339 time `a` is before `b` (a time that does not parse is not before anything).
function before(a, b) {
  const [x, y] = [Date.parse(a || ""), Date.parse(b || "")];
  return !Number.isNaN(x) && !Number.isNaN(y) && x < y;
}

function parseTime(text) {
  text = text.trim();
  if (!text) return null;
  const units = { s: 1, m: 60, h: 3600, d: 86400 };
  const relative = /^(\d+)\s*([smhd])$/.exec(text);
  if (relative) return new Date(Date.now() - relative[1] * units[relative[2]] * 1000).toISOString();
  const absolute = new Date(text);
  if (Number.isNaN(absolute.getTime())) throw new Error(`${text}: expected a duration ago (30m, 1h) or a time`);
  return absolute.toISOString();
}

// The form as one GetFlows filter (the fields `flowd dump` has flags for).
function formFilter() {
  const form = document.getElementById("filters");
  const value = (name) => form.elements[name].value.trim();
  const filter = {};
  for (const name of ["namespace", "pod", "workload", "ip", "policy"]) {
    if (value(name)) filter[name] = value(name).split(",").map((s) => s.trim()).filter(Boolean);
  }
  if (value("port")) {
    filter.port = value("port").split(",").map((p) => {
      const port = Number(p.trim());
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`port ${p}: expected 0-65535`);
      return port;
    });
  }
  if (value("verdict")) filter.verdict = [value("verdict")];
  return filter;
}

function window_() {
  const form = document.getElementById("filters");
  return { since: parseTime(form.elements.since.value), until: parseTime(form.elements.until.value) };
}

async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    let message = `${path}: HTTP ${response.status}`;
    try { message = `${path}: ${(await response.json()).error}`; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function request(extra) {
  const filter = formFilter();
  const { since, until } = window_();
  const body = Object.assign({}, extra);
  if (Object.keys(filter).length) body.allow = [filter];
  if (since) body.since = since;
  if (until) body.until = until;
  return body;
}

// ---- the graph --------------------------------------------------------------------------

function policyKey(p) {
  return [p.kind || "", p.tier || "", p.namespace || "", p.name || ""].join("|");
}

function policyName(p) {
  if (!p) return "no policy";
  return p.namespace ? `${p.namespace}/${p.name}` : p.name;
}

function portText(ranges) {
  if (!ranges || !ranges.length) return "";
  return ranges.map((r) => (r.first === r.last ? `${r.first}` : `${r.first}-${r.last}`)).join(", ");
}

function protocolText(p) {
  return (p || "PROTOCOL_UNSPECIFIED").replace("PROTOCOL_", "");
}

function groupOf(node) {
  if (node.namespace) return `ns:${node.namespace}`;
  if (node.kind === "GRAPH_NODE_KIND_HOST") return "group:hosts";
  return "group:outside";
}

function groupLabel(group) {
  if (group.startsWith("ns:")) return group.slice(3);
  return group === "group:hosts" ? "hosts" : "outside the cluster";
}

function nodeLabel(node) {
  const kind = node.workloadKind && node.workloadKind !== "Pod" ? ` (${node.workloadKind})` : "";
  return `${node.name}${kind}`;
}

function worst(verdicts) {
  return SEVERITY.find((v) => verdicts.has(v)) || "VERDICT_UNSPECIFIED";
}

// The graph as drawn: hidden nodes left out, collapsed namespaces folded into one node each.
function drawnElements(graph) {
  const elements = [];
  const shownNode = new Map();
  const groups = new Set();
  for (const node of graph.nodes || []) {
    if (state.hidden.has(node.id)) continue;
    const group = groupOf(node);
    if (state.collapsed.has(group)) {
      shownNode.set(node.id, group);
      continue;
    }
    groups.add(group);
    shownNode.set(node.id, node.id);
    elements.push({ group: "nodes", data: { id: node.id, label: nodeLabel(node), parent: group, kind: node.kind } });
  }
  for (const group of state.collapsed) {
    if ([...shownNode.values()].includes(group)) {
      elements.push({ group: "nodes", classes: "collapsed", data: { id: group, label: `${groupLabel(group)} (collapsed)` } });
    }
  }
  for (const group of groups) {
    elements.push({ group: "nodes", classes: "group", data: { id: group, label: groupLabel(group) } });
  }
  const folded = new Map();
  (graph.edges || []).forEach((edge, index) => {
    const source = shownNode.get(edge.source);
    const target = shownNode.get(edge.destination);
    if (!source || !target) return;
    const key = `${source}>${target}>${edge.protocol}`;
    const entry = folded.get(key) || { source, target, protocol: edge.protocol, edges: [], verdicts: new Set(), connections: 0 };
    entry.edges.push(index);
    entry.verdicts.add(edge.verdict);
    entry.connections += num(edge.connections);
    folded.set(key, entry);
  });
  let i = 0;
  for (const entry of folded.values()) {
    const verdict = worst(entry.verdicts);
    const ports = entry.edges.length === 1 ? portText(graph.edges[entry.edges[0]].ports) : "";
    elements.push({
      group: "edges",
      data: {
        id: `edge-${i++}`,
        source: entry.source,
        target: entry.target,
        verdict,
        colour: COLOURS[verdict],
        edges: entry.edges,
        width: Math.min(8, 1.5 + Math.log10(1 + entry.connections)),
        label: `${protocolText(entry.protocol)} ${ports}`.trim(),
      },
    });
  }
  return elements;
}

// A large graph's nodes in a block per group (a collapsed namespace is a block of one), the
// blocks in rows, as many a row as makes them largest in a `width` x `height` container. The
// positions are given (a preset layout) and the group boxes are the edge layer's: compound
// parents and a layout cost cytoscape hundreds of milliseconds at 1,000 nodes.
function placeInBlocks(nodes, width, height) {
  const blocks = new Map();
  for (const node of nodes) {
    if (node.classes === "group") continue;
    const group = node.data.parent || node.data.id;
    if (!blocks.has(group)) blocks.set(group, []);
    blocks.get(group).push(node);
  }
  // Namespaces by name, then hosts and the outside world, collapsed or not.
  const order = (group) => `${group.startsWith("ns:") ? 0 : 1}${group}`;
  const shapes = [...blocks].sort(([a], [b]) => (order(a) < order(b) ? -1 : 1)).map(([group, members]) => {
    const columns = Math.max(1, Math.ceil(Math.sqrt((members.length * CELL_HEIGHT) / CELL_WIDTH)));
    // At least two cells wide, for the box's label (a collapsed namespace's is long).
    return { group, members, columns, width: Math.max(2, columns) * CELL_WIDTH, height: Math.ceil(members.length / columns) * CELL_HEIGHT };
  });
  const rows = (perRow) => {
    const list = [];
    for (let i = 0; i < shapes.length; i += perRow) list.push(shapes.slice(i, i + perRow));
    return list;
  };
  const extent = (list) => [
    Math.max(...list.map((row) => row.reduce((sum, b) => sum + b.width + BLOCK_GAP, 0))),
    list.reduce((sum, row) => sum + Math.max(...row.map((b) => b.height)) + BLOCK_GAP, 0),
  ];
  let best = 1;
  let bestScale = 0;
  for (let perRow = 1; perRow <= shapes.length; perRow++) {
    const [w, h] = extent(rows(perRow));
    const scale = Math.min(width / w, height / h);
    if (scale > bestScale) [best, bestScale] = [perRow, scale];
  }
  const placed = [];
  const boxes = [];
  let y = 0;
  for (const row of rows(best)) {
    let x = 0;
    for (const shape of row) {
      shape.members.forEach((node, i) => {
        const data = Object.assign({}, node.data);
        delete data.parent;
        placed.push({ group: "nodes", classes: node.classes, data, position: { x: x + (i % shape.columns) * CELL_WIDTH, y: y + Math.floor(i / shape.columns) * CELL_HEIGHT } });
      });
      boxes.push({ group: shape.group, label: groupLabel(shape.group), width: shape.width, ids: shape.members.map((n) => n.data.id) });
      x += shape.width + BLOCK_GAP;
    }
    y += Math.max(...row.map((b) => b.height)) + BLOCK_GAP;
  }
  return { nodes: placed, boxes };
}

// The edges of a large graph (`edges`: drawnElements' edge entries) and the namespace boxes, on
// a canvas under cytoscape's, whose background is transparent. It is painted whenever
// cytoscape renders (pan, zoom, a dragged node), with cytoscape's pan and zoom, so nodes and
// edges move together. Clicks reach cytoscape: a tap on its background comes here.
function edgeLayer(cy, edges, boxes) {
  const container = cy.container();
  const canvas = el("canvas", { class: "edge-layer" });
  // Under cytoscape's canvases, which it appends to the container (destroy() empties it).
  container.prepend(canvas);
  const context = canvas.getContext("2d");
  const nodes = cy.nodes().toArray();
  const index = new Map(nodes.map((n, i) => [n.id(), i]));
  // Half sizes, for where an edge meets its node's outline (taken as an ellipse).
  const half = new Float64Array(2 * nodes.length);
  nodes.forEach((n, i) => { half[2 * i] = n.width() / 2; half[2 * i + 1] = n.height() / 2; });
  const from = Int32Array.from(edges, (e) => index.get(e.data.source));
  const to = Int32Array.from(edges, (e) => index.get(e.data.target));
  const widths = Float64Array.from(edges, (e) => e.data.width);
  // Arrowhead lengths as cytoscape sizes a triangle (with the arrow-scale 0.6 its large graphs
  // had).
  const arrows = widths.map((w) => 0.3 * 0.6 * Math.max(Math.pow(w * 13.37, 0.9), 29));
  // One stroke per colour and (rounded) width: thousands of strokes would cost what the
  // canvas saves.
  const buckets = new Map();
  edges.forEach((e, i) => {
    const key = `${PAINT_ORDER.indexOf(e.data.verdict)}|${e.data.colour}|${(Math.round(e.data.width * 2) / 2).toFixed(1)}`;
    if (!buckets.has(key)) buckets.set(key, []);
    buckets.get(key).push(i);
  });
  const order = [...buckets.keys()].sort((a, b) => parseFloat(a) - parseFloat(b));
  // Where each edge comes in the drawing: of edges under a click, the one on top is meant.
  const rank = new Int32Array(edges.length);
  order.flatMap((key) => buckets.get(key)).forEach((edge, i) => { rank[edge] = i; });
  // What the last paint drew, in model coordinates, for picking: a segment per edge (a
  // self-loop is a circle: centre, radius), and each box.
  const segments = new Float64Array(4 * edges.length);
  const xy = new Float64Array(2 * nodes.length);
  const boxesAt = boxes.map((box) => ({ group: box.group, label: box.label, width: box.width, members: box.ids.map((id) => index.get(id)), x1: 0, y1: 0, x2: 0, y2: 0 }));
  let selected = -1;
  let pending = false;

  // Plain loops over typed arrays: this runs on every frame of a pan, for every edge.
  function geometry() {
    for (let i = 0; i < nodes.length; i++) {
      const p = nodes[i].position();
      xy[2 * i] = p.x;
      xy[2 * i + 1] = p.y;
    }
    for (let i = 0; i < edges.length; i++) {
      const s = from[i];
      const t = to[i];
      const sx = xy[2 * s];
      const sy = xy[2 * s + 1];
      const at = 4 * i;
      if (s === t) {
        const r = Math.max(half[2 * s], half[2 * s + 1]);
        segments[at] = sx + r * 0.7;
        segments[at + 1] = sy - r * 0.7;
        segments[at + 2] = r * 0.8;
        segments[at + 3] = 0;
        continue;
      }
      const dx = xy[2 * t] - sx;
      const dy = xy[2 * t + 1] - sy;
      // From outline to outline: the fraction of the way each ellipse covers.
      const a = 1 / Math.sqrt((dx / half[2 * s]) ** 2 + (dy / half[2 * s + 1]) ** 2);
      const b = 1 - 1 / Math.sqrt((dx / half[2 * t]) ** 2 + (dy / half[2 * t + 1]) ** 2);
      // Overlapping nodes: nothing to draw between them.
      const drawn = b - a > 0 && Math.hypot(dx, dy) * (b - a) >= 1;
      segments[at] = drawn ? sx + dx * a : NaN;
      segments[at + 1] = sy + dy * a;
      segments[at + 2] = sx + dx * b;
      segments[at + 3] = sy + dy * b;
    }
  }

  function paintBoxes(zoom) {
    context.fillStyle = "#f3f5f8";
    context.strokeStyle = "#c4cad3";
    context.lineWidth = 1 / zoom;
    // A compound parent's padding, and room for the node labels under the last row.
    const [pad, label] = [12, 14];
    for (const box of boxesAt) {
      let [x1, y1, x2, y2] = [Infinity, Infinity, -Infinity, -Infinity];
      for (const n of box.members) {
        x1 = Math.min(x1, xy[2 * n] - half[2 * n]); x2 = Math.max(x2, xy[2 * n] + half[2 * n]);
        y1 = Math.min(y1, xy[2 * n + 1] - half[2 * n + 1]); y2 = Math.max(y2, xy[2 * n + 1] + half[2 * n + 1]);
      }
      // A block of one node (a collapsed namespace) has a box as wide as the block: room for
      // its name.
      x2 = Math.max(x2, x1 + box.width - CELL_WIDTH);
      Object.assign(box, { x1: x1 - pad, y1: y1 - pad, x2: x2 + pad, y2: y2 + pad + label });
      context.beginPath();
      if (context.roundRect) context.roundRect(box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1, 6);
      else context.rect(box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1);
      context.fill();
      context.stroke();
    }
  }

  // Namespace names over the edges, haloed, and readable zoomed out: at least 11 screen pixels,
  // shortened to the box's width and the gap after it.
  function paintLabels(zoom, pan) {
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.font = `bold ${Math.max(11, 10 * zoom)}px system-ui, sans-serif`;
    context.textAlign = "left";
    context.textBaseline = "bottom";
    context.lineJoin = "round";
    context.lineWidth = 3;
    context.strokeStyle = "#fff";
    context.fillStyle = "#333";
    for (const box of boxesAt) {
      const [x, y] = [box.x1 * zoom + pan.x + 2, box.y1 * zoom + pan.y - 3];
      const room = (box.x2 - box.x1 + BLOCK_GAP) * zoom - 8;
      let text = box.label;
      while (text.length > 1 && context.measureText(text).width > room) text = `${text.slice(0, -2)}…`;
      context.strokeText(text, x, y);
      context.fillText(text, x, y);
    }
  }

  // The line stops where its arrowhead starts.
  function strokeEdge(i) {
    const at = 4 * i;
    const x1 = segments[at];
    const y1 = segments[at + 1];
    if (from[i] === to[i]) {
      context.moveTo(x1 + segments[at + 2], y1);
      context.arc(x1, y1, segments[at + 2], 0, 2 * Math.PI);
      return;
    }
    const dx = segments[at + 2] - x1;
    const dy = segments[at + 3] - y1;
    const length = Math.hypot(dx, dy);
    const rest = 1 - Math.min(arrows[i], length) / length;
    context.moveTo(x1, y1);
    context.lineTo(x1 + dx * rest, y1 + dy * rest);
  }

  function arrow(i) {
    if (from[i] === to[i]) return;
    const at = 4 * i;
    const x2 = segments[at + 2];
    const y2 = segments[at + 3];
    const dx = x2 - segments[at];
    const dy = y2 - segments[at + 1];
    const length = Math.hypot(dx, dy);
    const size = arrows[i];
    const ux = dx / length;
    const uy = dy / length;
    const bx = x2 - ux * size;
    const by = y2 - uy * size;
    context.moveTo(x2, y2);
    context.lineTo(bx - (uy * size) / 2, by + (ux * size) / 2);
    // No closePath: fill() closes each triangle, and Chromium's closePath is slow on a path
    // of thousands of subpaths (2 s for 10,000).
    context.lineTo(bx + (uy * size) / 2, by - (ux * size) / 2);
  }

  function paint() {
    const started = performance.now();
    const [width, height] = [container.clientWidth, container.clientHeight];
    if (canvas.width !== width || canvas.height !== height) [canvas.width, canvas.height] = [width, height];
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.clearRect(0, 0, width, height);
    const [zoom, pan] = [cy.zoom(), cy.pan()];
    context.setTransform(zoom, 0, 0, zoom, pan.x, pan.y);
    geometry();
    paintBoxes(zoom);
    // What is on screen, in model coordinates: edges wholly to one side of it are skipped.
    const [left, top, right, bottom] = [-pan.x / zoom, -pan.y / zoom, (width - pan.x) / zoom, (height - pan.y) / zoom];
    const margin = 20;
    const visible = (i) => {
      const at = 4 * i;
      const x1 = segments[at];
      const y1 = segments[at + 1];
      if (Number.isNaN(x1)) return false;
      const loop = from[i] === to[i];
      const r = loop ? segments[at + 2] + margin : margin;
      const x2 = loop ? x1 : segments[at + 2];
      const y2 = loop ? y1 : segments[at + 3];
      return Math.max(x1, x2) + r >= left && Math.min(x1, x2) - r <= right && Math.max(y1, y2) + r >= top && Math.min(y1, y2) - r <= bottom;
    };
    for (const key of order) {
      const [, colour, lineWidth] = key.split("|");
      const shown = buckets.get(key).filter(visible);
      context.strokeStyle = colour;
      context.fillStyle = colour;
      context.lineWidth = Number(lineWidth);
      context.beginPath();
      for (const i of shown) strokeEdge(i);
      context.stroke();
      context.beginPath();
      for (const i of shown) arrow(i);
      context.fill();
    }
    if (selected >= 0 && !Number.isNaN(segments[4 * selected])) {
      // As cytoscape marks a selected element, a translucent overlay, but stronger and with the
      // edge drawn again over it: among thousands of lines a faint one is lost.
      context.globalAlpha = 0.45;
      context.strokeStyle = "#1f5fbf";
      context.lineWidth = Math.max(widths[selected] + 10, 8 / zoom);
      context.beginPath();
      strokeEdge(selected);
      context.stroke();
      context.globalAlpha = 1;
      context.strokeStyle = context.fillStyle = edges[selected].data.colour;
      context.lineWidth = Math.max(widths[selected], 2 / zoom);
      context.beginPath();
      strokeEdge(selected);
      context.stroke();
      context.beginPath();
      arrow(selected);
      context.fill();
    }
    paintLabels(zoom, pan);
    // The last paint's, not the load's: it repaints on every frame of a pan.
    state.timings.edgePaint = Math.round(performance.now() - started);
  }

  // Repaints outside cytoscape's frames (a selection), at most once a frame.
  function repaint() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; if (state.edgeLayer === layer) paint(); });
  }

  // The edge nearest `p` (model coordinates) within EDGE_PICK_DISTANCE screen pixels, or -1;
  // of those a pixel or less farther, the one drawn on top (what the user sees there).
  function pick(p) {
    const zoom = cy.zoom();
    const distances = new Float64Array(edges.length).fill(Infinity);
    let nearest = Infinity;
    for (let i = 0; i < edges.length; i++) {
      const at = 4 * i;
      if (Number.isNaN(segments[at])) continue;
      const x1 = segments[at];
      const y1 = segments[at + 1];
      let distance;
      if (from[i] === to[i]) {
        distance = Math.abs(Math.hypot(p.x - x1, p.y - y1) - segments[at + 2]);
      } else {
        const dx = segments[at + 2] - x1;
        const dy = segments[at + 3] - y1;
        const t = Math.max(0, Math.min(1, ((p.x - x1) * dx + (p.y - y1) * dy) / (dx * dx + dy * dy)));
        distance = Math.hypot(p.x - x1 - t * dx, p.y - y1 - t * dy);
      }
      distances[i] = Math.max(0, (distance - widths[i] / 2) * zoom);
      nearest = Math.min(nearest, distances[i]);
    }
    if (nearest > EDGE_PICK_DISTANCE) return -1;
    let best = -1;
    for (let i = 0; i < edges.length; i++) {
      if (distances[i] <= nearest + 1 && (best < 0 || rank[i] > rank[best])) best = i;
    }
    return best;
  }

  const layer = {
    count: edges.length,
    paint,
    // A tap on cytoscape's background: on an edge it opens the edge's panel, as a tap on a
    // cytoscape edge does; else in a namespace box it collapses the namespace, as a tap on a
    // compound parent does.
    tap(position) {
      const i = pick(position);
      layer.select(i);
      if (i >= 0) {
        showEdges(edges[i].data.edges);
        return;
      }
      const box = boxesAt.find((b) => position.x >= b.x1 && position.x <= b.x2 && position.y >= b.y1 && position.y <= b.y2);
      if (box) toggleGroup(box.group);
    },
    select(i) {
      if (i === selected) return;
      selected = i;
      if (i >= 0) cy.$(":selected").unselect();
      repaint();
    },
    // For tests and benchmarks, which cannot ask cytoscape for these edges: the edge a click
    // at container pixels (x, y) picks, and an edge's data with the middle of its line.
    at(x, y) {
      const [zoom, pan] = [cy.zoom(), cy.pan()];
      return pick({ x: (x - pan.x) / zoom, y: (y - pan.y) / zoom });
    },
    edge(i) {
      const at = 4 * i;
      const [zoom, pan] = [cy.zoom(), cy.pan()];
      const [x, y] = from[i] === to[i]
        ? [segments[at] + segments[at + 2], segments[at + 1]]
        : [(segments[at] + segments[at + 2]) / 2, (segments[at + 1] + segments[at + 3]) / 2];
      return Object.assign({}, edges[i].data, { x: x * zoom + pan.x, y: y * zoom + pan.y });
    },
  };
  cy.on("render", paint);
  return layer;
}

function toggleGroup(group) {
  if (state.collapsed.has(group)) state.collapsed.delete(group);
  else state.collapsed.add(group);
  state.chosen = true;
  draw();
}

function draw() {
  const graph = state.graph;
  let started = performance.now();
  const elements = drawnElements(graph);
  timed("elements", started);
  started = performance.now();
  const nodeCount = elements.filter((e) => e.group === "nodes").length;
  const edges = elements.filter((e) => e.group === "edges");
  const large = edges.length > LARGE_EDGE_COUNT;
  if (state.cy) state.cy.destroy();
  state.edgeLayer = null;
  const container = document.getElementById("graph");
  const blocks = large ? placeInBlocks(elements.filter((e) => e.group === "nodes"), container.clientWidth || 1200, container.clientHeight || 600) : null;
  state.cy = cytoscape({
    container,
    elements: large ? blocks.nodes : elements,
    wheelSensitivity: 0.3,
    textureOnViewport: large,
    pixelRatio: large ? 1 : "auto",
    style: [
      { selector: "node", style: { label: "data(label)", "font-size": 10, "text-valign": "bottom", "text-margin-y": 3, "background-color": "#4c78a8", width: 18, height: 18 } },
      { selector: 'node[kind = "GRAPH_NODE_KIND_WORLD"]', style: { "background-color": "#9aa0a6", shape: "diamond" } },
      { selector: 'node[kind = "GRAPH_NODE_KIND_HOST"]', style: { "background-color": "#72b7b2", shape: "round-rectangle" } },
      { selector: "node.group", style: { "background-color": "#f3f5f8", "border-color": "#c4cad3", "border-width": 1, "text-valign": "top", "font-weight": "bold", shape: "round-rectangle", padding: 12 } },
      { selector: "node.collapsed", style: { "background-color": "#c4cad3", shape: "round-rectangle", width: 30, height: 22 } },
      { selector: "edge", style: { width: "data(width)", "line-color": "data(colour)", "target-arrow-color": "data(colour)", "target-arrow-shape": "triangle", "curve-style": "bezier", label: "data(label)", "font-size": 9, "text-rotation": "autorotate", "text-background-color": "#fff", "text-background-opacity": 0.8 } },
      { selector: ":selected", style: { "overlay-color": "#1f5fbf", "overlay-opacity": 0.2 } },
    // Labels too small to read are not painted: at 1,000 nodes that halves the first paint.
    ].concat(large ? [{ selector: "node", style: { "min-zoomed-font-size": 7 } }] : []),
    layout: large
      ? { name: "preset", padding: 30 }
      : nodeCount <= FORCE_LAYOUT_LIMIT
        ? { name: "cose", animate: false, randomize: false, nodeDimensionsIncludeLabels: true }
        : { name: "grid", avoidOverlap: false },
  });
  if (large) state.edgeLayer = edgeLayer(state.cy, edges, blocks.boxes);
  state.drawnEdges = edges.length;
  timed("cytoscape", started);
  state.cy.on("tap", "edge", (event) => showEdges(event.target.data("edges")));
  state.cy.on("tap", (event) => {
    if (event.target === event.cy && state.edgeLayer) state.edgeLayer.tap(event.position);
  });
  state.cy.on("tap", "node", (event) => {
    const node = event.target;
    if (state.edgeLayer) state.edgeLayer.select(-1);
    if (node.hasClass("group") || node.hasClass("collapsed")) {
      toggleGroup(node.id());
      return;
    }
    showNode(node.id());
  });
  const summary = document.getElementById("graph-summary");
  const total = num(graph.edgesTotal);
  const shown = (graph.edges || []).length;
  const folded = state.collapsed.size ? `; ${fmt(state.collapsed.size)} namespaces collapsed, click one to open it` : "";
  summary.textContent = `${fmt(graph.flows)} flows, ${fmt((graph.nodes || []).length)} nodes, ${fmt(shown)} edges${total > shown ? ` (top ${fmt(shown)} of ${fmt(total)})` : ""}${folded}`;
  const unavailable = (graph.unavailable || []).map((n) => `${n.address}: ${n.message}`);
  if (unavailable.length) showError(`not in this graph: ${unavailable.join("; ")}`);
  renderHidden();
}

function renderHidden() {
  const box = document.getElementById("hidden-nodes");
  box.replaceChildren();
  for (const id of state.hidden) {
    box.append(el("button", { type: "button", class: "link", title: "show again", on: { click: () => { state.hidden.delete(id); draw(); } } }, `show ${id}`), " ");
  }
}

// ---- side panel -------------------------------------------------------------------------

function openPanel(...children) {
  const panel = document.getElementById("panel");
  document.getElementById("panel-body").replaceChildren(...children);
  panel.hidden = false;
  // The graph gave up width to the panel: cytoscape measures its container again.
  if (state.cy) state.cy.resize().fit(undefined, 20);
}

function closePanel() {
  document.getElementById("panel").hidden = true;
  if (state.cy) state.cy.resize().fit(undefined, 20);
}

function definitionList(pairs) {
  return el("dl", {}, pairs.filter(([, v]) => v !== "" && v !== null && v !== undefined).map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

// proto3 JSON leaves a zero enum out: such a count is of the UNSPECIFIED value.
function counts(list, name, label, unspecified) {
  return (list || []).map((c) => `${label(c[name] || unspecified)}: ${fmt(c.connections)}`).join(", ");
}

function nodeById(id) {
  return (state.graph.nodes || []).find((n) => n.id === id);
}

function edgeTitle(edge) {
  const source = nodeById(edge.source);
  const destination = nodeById(edge.destination);
  return `${source ? nodeLabel(source) : edge.source} → ${destination ? nodeLabel(destination) : edge.destination}`;
}

function policySection(decision) {
  const p = decision.policy;
  const side = decision.side === "POLICY_SIDE_EGRESS" ? "egress (at the source)" : "ingress (at the destination)";
  // proto3 JSON leaves out zeros: no ruleIndex is rule 0.
  const index = p ? p.ruleIndex || 0 : null;
  const named = p && p.ruleName ? ` (${p.ruleName})` : "";
  const rule = index === null ? "" : index === -1 ? "-1 (end of tier: no rule allowed it)" : `${index}${named}`;
  const loaded = p ? state.policies.get(policyKey(p)) : null;
  return el("div", { class: "decision" },
    el("h3", { class: decision.allowed ? "verdict-VERDICT_FORWARDED" : "verdict-VERDICT_DENIED" },
      `${decision.allowed ? "allowed" : "denied"} on ${side}`),
    definitionList([
      ["policy", p ? policyName(p) : "none applied"],
      ["kind", p ? p.kind : ""],
      ["tier", p ? p.tier : ""],
      ["rule", rule],
      ["action", decision.action],
      ["connections", fmt(decision.connections)],
    ]),
    loaded && loaded.text ? el("pre", { class: "policy" }, loaded.text) : null);
}

function sameNode(endpoint, id, recordedOn) {
  return endpointId(endpoint, recordedOn) === id;
}

// The graph node id of a record's endpoint, as the server computes it (graph/identity.rs).
function endpointId(e, recordedOn) {
  if (!e) return "";
  switch (e.kind) {
    case "ENDPOINT_KIND_POD": {
      const w = e.workload && e.workload.name ? e.workload : { kind: "Pod", name: e.name };
      return `workload:${e.namespace || ""}/${w.kind || "Pod"}/${w.name}`;
    }
    case "ENDPOINT_KIND_HOST":
    case "ENDPOINT_KIND_NODE":
      return `host:${e.node || e.name || recordedOn}`;
    case "ENDPOINT_KIND_SERVICE":
      return `service:${e.namespace || ""}/${e.name}`;
    default:
      return `world:${e.ip}`;
  }
}

function showEdges(indexes) {
  const edges = indexes.map((i) => state.graph.edges[i]);
  const sections = edges.map((edge) => el("section", { class: "edge", data: { source: edge.source, destination: edge.destination } },
    el("h3", { class: `verdict-${edge.verdict}` }, `${edgeTitle(edge)}: ${VERDICT_WORDS[edge.verdict] || edge.verdict}`),
    definitionList([
      ["protocol", protocolText(edge.protocol)],
      ["ports", portText(edge.ports)],
      ["connections", fmt(edge.connections)],
      ["records", fmt(edge.flows)],
      ["traffic", `${bytes(edge.bytes)}, ${fmt(edge.packets)} packets`],
      ["verdicts", counts(edge.verdicts, "verdict", (v) => VERDICT_WORDS[v] || v, "VERDICT_UNSPECIFIED")],
      ["outcomes", counts(edge.outcomes, "outcome", (o) => o.replace("OUTCOME_", "").toLowerCase(), "OUTCOME_UNSPECIFIED")],
      ["kernel drops", counts(edge.dropReasons, "reason", (r) => r, "")],
      ["seen", `${edge.firstSeen || ""} – ${edge.lastSeen || ""}`],
      ["recorded by", (edge.recordedBy || []).join(", ")],
    ]),
    // Denials first: they are why someone clicked.
    (edge.policies || []).slice().sort((a, b) => Number(a.allowed || false) - Number(b.allowed || false)).map(policySection),
    (edge.policies || []).some((p) => !p.allowed && p.policy)
      ? el("div", { class: "proposal" },
          el("button", { type: "button", class: "recommend", on: { click: (event) => recommend(edge, event.target.parentNode) } },
            "Recommend a policy that allows it"))
      : null,
    el("h3", {}, "Flows behind it"),
    el("div", { class: "edge-flows" }, "loading…")));
  openPanel(...sections);
  // A folded edge between collapsed namespaces can stand for hundreds: the first few load
  // their flows, the others on a click.
  edges.forEach((edge, i) => {
    const box = sections[i].querySelector(".edge-flows");
    if (i < EDGE_SECTIONS_LOADED) edgeFlows(edge, box);
    else box.replaceChildren(el("button", { type: "button", class: "link", on: { click: () => edgeFlows(edge, box) } }, "show its flows"));
  });
}

// What `flowd policy recommend` would propose for the side that denied the edge, and how the
// window's history fares with it (the server evaluates every flow with and without it).
async function recommend(edge, box) {
  box.replaceChildren("checking against the history…");
  const { since, until } = window_();
  const body = { source: edge.source, destination: edge.destination, protocol: edge.protocol };
  if (since) body.since = since;
  if (until) body.until = until;
  try {
    const answer = await (await postJson("/api/v1/recommend", body)).json();
    const w = answer.whatIf || {};
    const side = answer.side === "POLICY_SIDE_EGRESS" ? "egress at the source" : "ingress at the destination";
    const examples = (w.newlyDeniedExamples || []).map((e) => el("li", {}, e));
    box.replaceChildren(
      el("h3", {}, `Proposed for ${side}`),
      answer.yaml ? el("pre", { class: "policy proposal-yaml" }, answer.yaml) : null,
      (answer.notes || []).length ? el("ul", { class: "notes" }, answer.notes.map((n) => el("li", {}, n))) : null,
      el("h3", {}, "What if it were applied"),
      definitionList([
        ["flows checked", fmt(w.flowsChecked)],
        ["this edge", `${fmt(w.edgeAllowed)} denied connections allowed, ${fmt(w.edgeStillDenied)} still denied`],
        ["elsewhere", `${fmt(w.newlyDenied)} newly denied, ${fmt(w.newlyAllowedElsewhere)} newly allowed`],
      ]),
      examples.length ? el("ul", { class: "newly-denied" }, examples) : null);
    box.dataset.state = "ready";
  } catch (err) {
    box.replaceChildren(String(err.message || err));
    box.dataset.state = "error";
  }
}

// A filter the server can apply for one end of an edge (the rest is checked here).
function endFilter(node) {
  if (!node) return {};
  switch (node.kind) {
    case "GRAPH_NODE_KIND_WORKLOAD":
      // A bare pod has no workload on its records: ask for it by name.
      return node.workloadKind === "Pod"
        ? { pod: [`${node.namespace}/${node.name}`] }
        : { namespace: [node.namespace], workload: [`${node.workloadKind}/${node.name}`] };
    case "GRAPH_NODE_KIND_WORLD":
      return { ip: [node.name] };
    case "GRAPH_NODE_KIND_SERVICE":
      return { service: [`${node.namespace}/${node.name}`] };
    default:
      return { node: [node.name] };
  }
}

// The latest flows of an edge: the server's `last` with filters for both ends (either side
// matches, so the exact direction is checked here), never the whole window.
async function edgeFlows(edge, box) {
  const filter = Object.assign({ protocol: [edge.protocol] }, endFilter(nodeById(edge.source)));
  const { since, until } = window_();
  const inWindow = (f) => (!since || !before(f.endTime, since)) && (!until || before(f.endTime, until));
  try {
    const flows = (await readFlows(await postJson("/api/v1/flows", { allow: [filter], last: EDGE_FLOWS }), null))
      .filter((f) => sameNode(f.source, edge.source, f.node) && sameNode(f.destination, edge.destination, f.node))
      .filter(inWindow);

    const table = el("table", {}, el("thead", {}, el("tr", {}, ["end", "port", "verdict", "outcome", "process"].map((h) => el("th", {}, h)))),
      el("tbody", {}, flows.slice(-50).reverse().map((f) => el("tr", {},
        timeCell(f.endTime),
        el("td", {}, f.destination ? f.destination.port : ""),
        el("td", { class: `verdict-${f.verdict}` }, VERDICT_WORDS[f.verdict] || ""),
        el("td", {}, (f.outcome || "").replace("OUTCOME_", "").toLowerCase()),
        el("td", {}, f.process ? `${f.process.command} (${f.process.pid})` : "")))));
    box.replaceChildren(flows.length ? table : "none in the window");
  } catch (err) {
    box.replaceChildren(String(err.message || err));
  }
}

function showNode(id) {
  const node = nodeById(id);
  const edges = (state.graph.edges || []).map((e, i) => [e, i]);
  const list = (pairs) => el("ul", {}, pairs.map(([edge, i]) => el("li", {},
    el("button", { type: "button", class: `link verdict-${edge.verdict}`, on: { click: () => showEdges([i]) } },
      `${edgeTitle(edge)} ${protocolText(edge.protocol)} ${portText(edge.ports)}`),
    ` ${fmt(edge.connections)} connections`)));
  openPanel(
    el("h3", {}, node ? nodeLabel(node) : id),
    definitionList([
      ["id", id],
      ["namespace", node ? node.namespace : ""],
      ["pods", node && num(node.podCount) ? `${(node.pods || []).join(", ")}${num(node.podCount) > (node.pods || []).length ? " …" : ""} (${fmt(node.podCount)})` : ""],
    ]),
    el("button", { type: "button", on: { click: () => { state.hidden.add(id); closePanel(); draw(); } } }, "Hide this node"),
    el("h3", {}, "Outbound"), list(edges.filter(([e]) => e.source === id)),
    el("h3", {}, "Inbound"), list(edges.filter(([e]) => e.destination === id)));
}

// ---- flows table and policy board -------------------------------------------------------

function endpointText(e) {
  if (!e) return "";
  const who = e.namespace && e.name ? `${e.namespace}/${e.name}` : e.name || e.ip;
  return `${who}${e.port ? `:${e.port}` : ""}`;
}

function flowRow(f) {
  const policy = f.policy ? `${policyName(f.policy)} rule ${f.policy.ruleIndex || 0}` : "";
  return el("tr", { data: { cursor: f.cursor || "" } },
    timeCell(f.endTime),
    el("td", {}, endpointText(f.source)),
    el("td", {}, endpointText(f.destination)),
    el("td", {}, protocolText(f.protocol)),
    el("td", {}, f.destination ? f.destination.port || "" : ""),
    el("td", { class: `verdict-${f.verdict}` }, VERDICT_WORDS[f.verdict] || ""),
    el("td", {}, (f.outcome || "").replace("OUTCOME_", "").toLowerCase()),
    el("td", {}, policy),
    el("td", {}, f.dropReason || ""),
    el("td", {}, f.process ? `${f.process.command} (${f.process.pid})` : ""),
    el("td", {}, f.node || ""));
}

// Reads a JSON-lines answer; with `onFlow`, hands over each flow as it arrives (following).
async function readFlows(response, onFlow) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const flows = [];
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (!line.trim()) continue;
      const event = JSON.parse(line);
      if (event.error) throw new Error(event.error);
      if (event.flow) {
        flows.push(event.flow);
        if (onFlow) onFlow(event.flow);
      } else if (event.lostRecords && onFlow) {
        showError(`${fmt(event.lostRecords.count)} records skipped: this page read too slowly`);
      }
    }
  }
  return flows;
}

async function loadFlows(generation) {
  if (state.follow) state.follow.abort();
  const controller = new AbortController();
  state.follow = controller;
  const form = document.getElementById("filters");
  const tbody = document.querySelector("#flows-table tbody");
  const summary = document.getElementById("flows-summary");
  const follow = form.elements.follow.checked;
  const { since, until } = window_();
  // The newest TABLE_ROWS matching, from the server's `last`; only a window with an end
  // (a past range) is read as a range, since `last` and a range do not go together.
  const body = until && !follow ? request({}) : request({ last: TABLE_ROWS, follow });
  if (!(until && !follow)) { delete body.since; delete body.until; }
  const inWindow = (f) => follow || until || !since || !before(f.endTime, since);
  const response = await fetch("/api/v1/flows", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: controller.signal,
  });
  if (!response.ok) throw new Error(`/api/v1/flows: ${(await response.json()).error}`);
  if (generation !== state.generation) return;
  tbody.replaceChildren();
  if (follow) {
    summary.textContent = "live";
    readFlows(response, (flow) => {
      tbody.prepend(flowRow(flow));
      while (tbody.rows.length > TABLE_ROWS) tbody.deleteRow(-1);
    }).catch((err) => { if (err.name !== "AbortError") showError(String(err.message || err)); });
    return;
  }
  const flows = (await readFlows(response, null)).filter(inWindow);
  if (generation !== state.generation) return;
  const shown = flows.slice(-TABLE_ROWS).reverse();
  tbody.replaceChildren(...shown.map(flowRow));
  summary.textContent = `${fmt(shown.length)}${flows.length > shown.length ? ` of ${fmt(flows.length)}` : ""}`;
}

function renderBoard(graph) {
  state.policies = new Map();
  for (const usage of graph.policies || []) state.policies.set(policyKey(usage.policy || {}), usage);
  const rows = (graph.policies || []).slice().sort((a, b) => num(b.deniedConnections) - num(a.deniedConnections) || num(b.allowedConnections) - num(a.allowedConnections));
  document.querySelector("#policy-board tbody").replaceChildren(...rows.map((usage) => {
    const p = usage.policy || {};
    return el("tr", { class: "clickable", title: "show this policy's flows", data: { policy: policyName(p) },
      on: { click: () => { document.getElementById("filters").elements.policy.value = policyName(p); refresh(); } } },
      el("td", {}, policyName(p)),
      el("td", {}, p.kind || ""),
      el("td", {}, p.tier || ""),
      el("td", { class: "allowed" }, fmt(usage.allowedConnections)),
      el("td", { class: num(usage.deniedConnections) ? "denied verdict-VERDICT_DENIED" : "denied" }, fmt(usage.deniedConnections)));
  }));
}

// ---- putting it together ----------------------------------------------------------------

// Where a load's time went (milliseconds), for whoever wonders why a page is slow.
function timed(name, started) {
  state.timings[name] = Math.round(performance.now() - started);
}

function allGroups(graph) {
  return new Set((graph.nodes || []).map(groupOf));
}

function setAllCollapsed(collapse) {
  state.collapsed = collapse ? allGroups(state.graph) : new Set();
  state.chosen = true;
  const started = performance.now();
  draw();
  timed("graphDraw", started);
}

async function loadGraph(generation) {
  let started = performance.now();
  const response = await postJson("/api/v1/graph", request({}));
  const text = await response.text();
  timed("graphFetch", started);
  // A newer load started meanwhile: its answer is the one to show.
  if (generation !== state.generation) return;
  started = performance.now();
  state.graph = JSON.parse(text);
  timed("graphParse", started);
  if (!state.chosen && (state.graph.nodes || []).length > COLLAPSE_NODE_COUNT) {
    state.collapsed = allGroups(state.graph);
  }
  started = performance.now();
  renderBoard(state.graph);
  draw();
  timed("graphDraw", started);
}

async function loadScope() {
  try {
    const status = await (await fetch("/api/v1/status")).json();
    const nodes = status.nodes && status.nodes.length ? `, ${status.nodes.length} nodes` : "";
    document.getElementById("scope").textContent = `${status.node}${nodes}`;
  } catch (_) { /* the scope line is a nicety */ }
}

async function refresh() {
  const generation = ++state.generation;
  document.body.dataset.state = "loading";
  showError("");
  // Panels hold edges of the graph being replaced.
  closePanel();
  try {
    const started = performance.now();
    await Promise.all([loadGraph(generation), loadFlows(generation).then(() => timed("flows", started))]);
    if (generation !== state.generation) return;
    document.body.dataset.state = "ready";
  } catch (err) {
    showError(String(err.message || err));
    document.body.dataset.state = "error";
  }
}

function exportShown() {
  const rows = [...document.querySelectorAll("#flows-table tbody tr")].map((tr) => [...tr.cells].map((td) => td.textContent));
  const blob = new Blob([JSON.stringify({ request: request({}), graph: state.graph, flows: rows }, null, 2)], { type: "application/json" });
  const link = el("a", { href: URL.createObjectURL(blob), download: "flowd-export.json" });
  document.body.append(link);
  link.click();
  link.remove();
}

function start() {
  // Tests and scripts read the page's state from here.
  window.flowd = state;
  document.getElementById("filters").addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
  document.getElementById("panel-close").addEventListener("click", closePanel);
  document.getElementById("export").addEventListener("click", exportShown);
  document.getElementById("expand-all").addEventListener("click", () => setAllCollapsed(false));
  document.getElementById("collapse-all").addEventListener("click", () => setAllCollapsed(true));
  loadScope();
  refresh();
}

document.addEventListener("DOMContentLoaded", start);
