// Small SVG charts drawn by hand (no library): a time-series chart with a y axis and a
// sparkline for table rows. Series are arrays of numbers or null (no data), aligned at
// their end (the newest point is on the right).

const NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
  return n;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function points(values, n, w, h, max, x0) {
  // one point per slot; a null breaks the line into segments
  const segs = [];
  let cur = [];
  const step = n > 1 ? w / (n - 1) : w;
  const off = n - values.length;
  values.forEach((v, i) => {
    if (v === null || v === undefined || Number.isNaN(v)) {
      if (cur.length) segs.push(cur);
      cur = [];
      return;
    }
    const x = x0 + (off + i) * step;
    const y = h - Math.min(v, max) / max * h;
    cur.push([x, y]);
  });
  if (cur.length) segs.push(cur);
  return segs;
}

function fmtAxis(v, unit) {
  const s = v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 1) + "k" : (v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1));
  return unit ? s + unit : s;
}

/**
 * chart({series: [{values, cls, area}], slots, height, unit}) → <svg>
 * slots: the number of x positions (history length), so charts of one page line up.
 */
export function chart({series, slots, height = 90, unit = "", width = 600, min = 0}) {
  const padL = 40, padT = 6, padB = 4;
  const h = height - padT - padB;
  const w = width - padL - 4;
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  max = niceMax(Math.max(max, min));
  const svg = svgEl("svg", {class: "chart-svg", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none"});
  const g = svgEl("g", {transform: `translate(0 ${padT})`});
  svg.appendChild(g);
  for (const f of [0, 0.5, 1]) {
    const y = h - f * h;
    g.appendChild(svgEl("line", {class: "grid", x1: padL, x2: width - 4, y1: y, y2: y}));
    const t = svgEl("text", {class: "axis", x: padL - 4, y: y + 3, "text-anchor": "end"});
    t.textContent = fmtAxis(max * f, unit);
    g.appendChild(t);
  }
  const n = Math.max(slots || 0, ...series.map(s => s.values.length), 2);
  for (const s of series) {
    for (const seg of points(s.values, n, w, h, max, padL)) {
      const d = seg.map(([x, y], i) => (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1)).join(" ");
      if (s.area && seg.length > 1) {
        const a = d + ` L${seg[seg.length - 1][0].toFixed(1)} ${h} L${seg[0][0].toFixed(1)} ${h} Z`;
        g.appendChild(svgEl("path", {class: s.cls + "-area", d: a}));
      }
      g.appendChild(svgEl("path", {class: s.cls, d: seg.length > 1 ? d : d + " l1 0", "data-series": s.cls}));
    }
  }
  return svg;
}

/** A tiny chart for a table row: request rate with the failure rate under it. */
export function sparkline(series, slots) {
  const width = 120, height = 26;
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  max = max > 0 ? max : 1;
  const svg = svgEl("svg", {class: "spark", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none"});
  const n = Math.max(slots || 0, ...series.map(s => s.values.length), 2);
  for (const s of series) {
    for (const seg of points(s.values, n, width, height - 2, max, 0)) {
      const d = seg.map(([x, y], i) => (i ? "L" : "M") + x.toFixed(1) + " " + (y + 1).toFixed(1)).join(" ");
      if (s.area && seg.length > 1) {
        svg.appendChild(svgEl("path", {class: s.cls + "-area",
          d: d + ` L${seg[seg.length - 1][0].toFixed(1)} ${height} L${seg[0][0].toFixed(1)} ${height} Z`}));
      }
      svg.appendChild(svgEl("path", {class: s.cls, d: seg.length > 1 ? d : d + " l1 0"}));
    }
  }
  return svg;
}
