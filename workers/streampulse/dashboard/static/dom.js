// Building the page's DOM and formatting numbers. Every value from the API goes in with
// textContent, a text node or setAttribute, never parsed as markup: post texts, hashtags and
// entities are hostile input.

const SVG = "http://www.w3.org/2000/svg";

// --- building DOM -----------------------------------------------------------------------

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

export function slot(id) {
  return document.querySelector(`[data-testid="${id}"]`);
}

export function fill(id, ...children) {
  const node = slot(id);
  if (node) node.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
}

export function empty(text) {
  return el("div", { class: "empty" }, text);
}

// --- formatting (predictable: tests read these) ----------------------------------------

const grouped = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

export function fmtInt(n) {
  return n === null || n === undefined ? "–" : String(Math.round(n));
}
export function fmtBig(n) {
  return n === null || n === undefined ? "–" : grouped.format(n);
}
export function fmtScore(x) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(3);
}
export function fmtPct(x) {
  return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%";
}
export function fmtRate(x) {
  if (x === null || x === undefined) return "–";
  return x >= 100 ? grouped.format(x) : x.toFixed(1);
}
export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
  return fmtSeconds(ms / 1000);
}
export function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  const units = [["d", 86400], ["h", 3600], ["min", 60]];
  for (const [unit, size] of units) if (Math.abs(s) >= size) return (s / size).toFixed(1) + " " + unit;
  return s.toFixed(1) + " s";
}
export function fmtMinute(iso) {
  // "2026-01-01T12:34:00Z" -> "12:34" (UTC, as the tables are)
  return iso ? iso.slice(11, 16) : "–";
}
export function fmtTime(iso) {
  return iso ? iso.replace("T", " ").replace("Z", " UTC") : "–";
}
export function shortDid(did) {
  return did && did.length > 28 ? did.slice(0, 16) + "…" + did.slice(-8) : did || "";
}

// --- pieces -----------------------------------------------------------------------------

export function kpi(label, value, tone, testid) {
  return el("div", { class: "kpi" + (tone ? " " + tone : ""), "data-testid": testid },
    el("div", { class: "value" }, value), el("div", { class: "label" }, label));
}

export function rows(pairs) {
  const box = el("div", { class: "rows" });
  for (const [k, v, testid] of pairs) {
    box.append(el("span", { class: "k" }, k), el("span", { class: "v", "data-testid": testid }, v));
  }
  return box;
}

export function table(testid, columns, items, rowFor) {
  const head = el("tr", {}, ...columns.map(([name, cls]) => el("th", { class: cls }, name)));
  const body = el("tbody");
  for (const item of items) body.append(rowFor(item));
  return el("table", { "data-testid": testid }, el("thead", {}, head), body);
}

export function cell(col, text, cls) {
  return el("td", { "data-col": col, class: cls }, text);
}

export function barCell(col, text, fraction, cls) {
  const bar = el("span", { class: "bar " + (cls || "") });
  bar.style.width = Math.max(0, Math.min(1, fraction || 0)) * 100 + "%";
  return el("td", { "data-col": col, class: "barcell num" }, el("span", {}, text), bar);
}

export function bars(values, height, titles) {
  const max = Math.max(1, ...values);
  const width = Math.max(values.length, 1);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img" });
  values.forEach((v, i) => {
    const h = (v / max) * (height - 2);
    const rect = svg("rect", { x: i + 0.1, y: height - h, width: 0.8, height: h, fill: "#2f81f7" });
    if (titles) {
      const title = svg("title");
      title.textContent = titles[i];
      rect.append(title);
    }
    chart.append(rect);
  });
  return chart;
}

export function sparkline(values) {
  const points = values.map((v) => (v === null || v === undefined ? 0 : v));
  if (points.length < 2) return null;
  const max = Math.max(...points, 1e-9);
  const chart = svg("svg", { viewBox: `0 0 ${points.length - 1} 30`, preserveAspectRatio: "none" });
  const coords = points.map((v, i) => `${i},${(30 - (v / max) * 28).toFixed(2)}`).join(" ");
  chart.append(svg("polyline", { points: coords, fill: "none", stroke: "#4fb3ff", "stroke-width": 1.5, "vector-effect": "non-scaling-stroke" }));
  return el("div", { class: "spark" }, chart);
}

export function sectionNote(id, section, ready) {
  if (!section) return fill(id, "");
  if (section.state === "waiting") return fill(id, "Waiting: " + section.message);
  if (section.state === "error") return fill(id, el("span", { class: "error" }, section.message));
  fill(id, ready || "");
}

export function usable(section) {
  return section && section.state === "ready";
}
