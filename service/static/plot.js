/* Vigil dashboard: a small canvas renderer for the figures charts.js builds, in place of
   plotly.min.js (4.8 MB that the browser parsed and compiled on every visit: 1.3-2.6 s of
   main-thread script per visit at 500 windows x 50 features; docs/dashboard.md).

   It draws the subset of Plotly's figure format the dashboard uses, nothing more:
   - traces: "scatter" (mode lines / markers / lines+markers; line color, dash, width;
     marker color, size, symbol circle|x|x-thin|diamond|triangle-down, outline; fill
     "tonexty"; stackgroup; error_y; connectgaps; yaxis "y2"; text; hoverinfo "skip";
     showlegend), "bar" (numeric or category x, grouped) and "heatmap" (z rows over
     category y, zmin/zmax, colorscale, colorbar tickvals/ticktext, customdata);
   - layout: title, height, margin, axes (title, type linear|log|category, range,
     rangemode "tozero", tickformat ".0%", tickvals/ticktext, tickangle, autorange
     "reversed", visible), a second y axis, line shapes, text annotations, hovermode
     "closest" (a heatmap's cell) or unified over x.
   The figure stays on the element as `el.data` and `el.layout`, as Plotly leaves them,
   so that tests and readers can check what is drawn from the figure itself. Hover shows
   the values under the cursor; `opts.onClick({x, y})` gets a heatmap's clicked cell.
   Drawing is synchronous and needs the element laid out (it takes its width); charts
   are drawn again when the window is resized. */
"use strict";

(function () {
  const FONT = "11px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  const GRID = "#eef2f6", AXIS = "#9aa5b1", TEXT = "#334e68";
  const DASH = { dot: [2, 3], dash: [6, 4] };
  const drawn = new Set();

  const finite = (v) => typeof v === "number" && Number.isFinite(v);
  const isCat = (ax, xs) => (ax && ax.type === "category") || xs.some((v) => v != null && typeof v !== "number");

  function niceTicks(lo, hi, n) {
    const span = hi - lo || Math.abs(hi) || 1, raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => span / s <= n) || 10 * mag;
    const out = [];
    for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return { values: out, step: step };
  }

  function tickText(v, step, ax) {
    if (ax.tickformat === ".0%") return (100 * v).toFixed(Math.max(0, -Math.floor(Math.log10(step * 100 + 1e-12)))) + "%";
    const a = Math.abs(v);
    if (a >= 1e6) return +(v / 1e6).toPrecision(3) + "M";
    if (a >= 1e4) return +(v / 1e3).toPrecision(3) + "k";
    return v.toFixed(Math.max(0, Math.min(6, -Math.floor(Math.log10(step + 1e-12)))));
  }

  function hoverText(v, ax) {
    if (!finite(v)) return v == null ? "–" : String(v);
    if (ax && ax.tickformat === ".0%") return (100 * v).toFixed(1) + "%";
    return Math.abs(v) >= 1e4 || Number.isInteger(v) ? v.toLocaleString("en") : Number(v).toPrecision(4).replace(/\.?0+(e|$)/, "$1");
  }

  /* an axis: data value -> pixel, its ticks and how to label them */
  function scale(ax, lo, hi, p0, p1, cats) {
    ax = ax || {};
    if (cats) {
      const idx = new Map(cats.map((c, i) => [String(c), i])), n = Math.max(cats.length, 1), rev = ax.autorange === "reversed";
      const f = (v) => { const i = idx.get(String(v)); return i == null ? NaN : p0 + (p1 - p0) * ((rev ? n - 1 - i : i) + 0.5) / n; };
      return { f: f, cat: true, band: Math.abs(p1 - p0) / n, ticks: cats.map((c) => [f(c), String(c)]) };
    }
    const log = ax.type === "log", tf = log ? (v) => (v > 0 ? Math.log10(v) : NaN) : (v) => v;
    if (ax.range) [lo, hi] = ax.range;
    else {
      if (ax.rangemode === "tozero") { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
      if (!(hi > lo)) { // one value (all error rates 0): a unit range above it, or around it
        if (ax.rangemode === "tozero" && lo >= 0) hi = lo + (ax.tickformat === ".0%" ? 0.01 : 1); else { lo -= 1; hi += 1; }
      }
      const pad = (hi - lo) * 0.05;
      if (!(ax.rangemode === "tozero" && lo === 0)) lo -= pad;
      if (!(ax.rangemode === "tozero" && hi === 0)) hi += pad;
    }
    if (ax.autorange === "reversed") [lo, hi] = [hi, lo];
    const f = (v) => p0 + (p1 - p0) * (tf(v) - lo) / (hi - lo);
    let ticks;
    if (ax.tickvals) ticks = ax.tickvals.map((v, i) => [f(v), ax.ticktext ? ax.ticktext[i] : String(v)]);
    else {
      const t = niceTicks(Math.min(lo, hi), Math.max(lo, hi), Math.max(2, Math.floor(Math.abs(p1 - p0) / 55)));
      ticks = t.values.map((v) => [f(v), tickText(v, t.step, ax)]);
    }
    return { f: f, cat: false, ticks: ticks.filter(([p]) => finite(p)), lo: lo, hi: hi };
  }

  function colorscale(stops) {
    const rgb = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
    const s = stops.map(([t, c]) => [t, rgb(c)]), lut = [];
    for (let k = 0; k < 256; k++) {
      const t = k / 255;
      let j = 1;
      while (j < s.length - 1 && s[j][0] < t) j++;
      const [t0, c0] = s[j - 1], [t1, c1] = s[j], u = t1 > t0 ? Math.min(1, Math.max(0, (t - t0) / (t1 - t0))) : 0;
      lut.push("rgb(" + c0.map((v, i) => Math.round(v + (c1[i] - v) * u)).join(",") + ")");
    }
    return lut;
  }

  function marker(ctx, x, y, m, color) {
    const r = (m.size || 6) / 2, sym = m.symbol || "circle", line = m.line || {};
    ctx.beginPath();
    if (sym === "x" || sym === "x-thin") {
      ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r); ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r);
      ctx.strokeStyle = line.color || color; ctx.lineWidth = line.width || (sym === "x" ? 2.5 : 1.5);
      ctx.stroke();
      return;
    }
    if (sym === "diamond") { ctx.moveTo(x, y - r * 1.3); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r * 1.3); ctx.lineTo(x - r, y); ctx.closePath(); }
    else if (sym === "triangle-down") { ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y - r); ctx.lineTo(x, y + r); ctx.closePath(); }
    else ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = color;
    ctx.fill();
    if (line.width) { ctx.strokeStyle = line.color; ctx.lineWidth = line.width; ctx.stroke(); }
  }

  /* the points of a scatter trace, stacked ones on top of those before them */
  function points(t, stacks) {
    const xs = t.x || [], ys = t.y || [];
    if (!t.stackgroup) return { x: xs, y: ys, base: null };
    const prev = stacks[t.stackgroup] || new Map(), base = [], y = [];
    xs.forEach((x, i) => { const b = prev.get(x) || 0; base.push(b); y.push(b + (finite(ys[i]) ? ys[i] : 0)); });
    const next = new Map();
    xs.forEach((x, i) => next.set(x, y[i]));
    stacks[t.stackgroup] = next;
    return { x: xs, y: y, base: base };
  }

  function legend(div, data) {
    const box = document.createElement("div");
    box.className = "vp-legend";
    data.filter((t) => t.name && t.showlegend !== false && t.type !== "heatmap").forEach((t) => {
      const item = document.createElement("span"), sw = document.createElement("i"), color = traceColor(t);
      if (t.type === "bar" || t.fill || t.stackgroup) sw.style.background = t.fillcolor || color;
      else if ((t.mode || "").includes("lines") && !(t.line && t.line.width === 0)) {
        sw.style.borderTop = "2px " + ((t.line || {}).dash ? "dotted " : "solid ") + color; sw.style.height = "0";
      } else { sw.textContent = /x/.test((t.marker || {}).symbol || "") ? "×" : "●"; sw.style.color = color; }
      item.append(sw, document.createTextNode(t.name));
      box.append(item);
    });
    return box;
  }

  const traceColor = (t) => {
    const m = t.marker || {}, l = t.line || {};
    return (typeof m.color === "string" && m.color !== "#fff" ? m.color : null) || l.color || (m.line || {}).color || "#4a5568";
  };

  function draw(div, fig, opts) {
    const L = fig.layout || {}, data = fig.data || [];
    div.data = data; div.layout = L; div.vp = { fig: fig, opts: opts || div.vp && div.vp.opts || {} };
    drawn.add(div);
    const title = document.createElement("div");
    title.className = "vp-title";
    title.textContent = (L.title && L.title.text) || "";
    const canvas = document.createElement("canvas"), tip = document.createElement("div");
    tip.className = "vp-tip"; tip.hidden = true;
    div.classList.add("vp");
    div.replaceChildren(title, canvas, legend(div, data), tip);
    const W = Math.max(200, div.clientWidth), H = Math.max(120, (L.height || 260) - 46), dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
    canvas.style.width = W + "px"; canvas.style.height = H + "px";
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.font = FONT;
    const m = Object.assign({ l: 52, r: 52 }, L.margin || {}), heat = data.find((t) => t.type === "heatmap");
    const xa = L.xaxis || {}, ya = L.yaxis || {}, y2a = L.yaxis2 || {};
    const xs = [].concat(...data.map((t) => t.x || []));
    const xcats = isCat(xa, xs) ? [...new Set(xs.map(String))] : null;
    const rot = xcats && xa.tickangle ? Math.min(90, Math.abs(xa.tickangle)) * Math.PI / 180 : 0;
    const longest = xcats ? Math.max(0, ...xcats.map((c) => ctx.measureText(c).width)) : 0;
    const box = { l: m.l, r: heat ? m.r + 60 : m.r, t: 8, b: rot ? Math.min(H / 2, 22 + longest * Math.sin(rot)) : 34 };
    if (heat || (ya.type === "category")) {
      const names = heat ? heat.y : [];
      box.l = Math.max(box.l, 14 + Math.max(0, ...names.map((n) => ctx.measureText(n).width)));
    }
    const P = { x0: box.l, x1: W - box.r, y0: box.t, y1: H - box.b };
    if (P.x1 - P.x0 < 20 || L.xaxis && L.xaxis.visible === false) { annotations(ctx, L, P, W, H); return div; }

    // -- data ranges ---------------------------------------------------------------------------
    const stacks = {}, pts = data.map((t) => (t.type === "scatter" ? points(t, stacks) : { x: t.x || [], y: t.y || [], base: null }));
    const ext = { y: [Infinity, -Infinity], y2: [Infinity, -Infinity], x: [Infinity, -Infinity] };
    const grow = (k, v) => { if (finite(v)) { ext[k][0] = Math.min(ext[k][0], v); ext[k][1] = Math.max(ext[k][1], v); } };
    let barw = Infinity;
    data.forEach((t, i) => {
      if (t.type === "heatmap") return;
      const k = t.yaxis === "y2" ? "y2" : "y", p = pts[i], e = t.error_y && t.error_y.array;
      p.y.forEach((v, j) => { grow(k, v); if (e && finite(e[j])) { grow(k, v - e[j]); grow(k, v + e[j]); } });
      if (t.type === "bar") { grow(k, 0); }
      if (!xcats) p.x.forEach((v) => grow("x", v));
      if (t.type === "bar" && !xcats) for (let j = 1; j < p.x.length; j++) barw = Math.min(barw, Math.abs(p.x[j] - p.x[j - 1]) || Infinity);
    });
    (L.shapes || []).forEach((s) => grow(s.yref === "y2" ? "y2" : "y", s.y0));
    if (heat) (heat.x || []).forEach((v) => grow("x", v));
    if (!finite(barw)) barw = 1;
    const xpad = heat || data.some((t) => t.type === "bar") ? barw / 2 : 0;
    const X = scale(Object.assign({}, xa, xcats ? {} : { range: xa.range || [ext.x[0] - xpad - (heat ? 0 : (ext.x[1] - ext.x[0]) * 0.03), ext.x[1] + xpad + (heat ? 0 : (ext.x[1] - ext.x[0]) * 0.03)] }),
      0, 1, P.x0, P.x1, xcats);
    const Y = scale(ya, ext.y[0], ext.y[1], P.y1, P.y0, heat ? heat.y : ya.type === "category" ? [...new Set(data.flatMap((t) => t.y || []))] : null);
    const Y2 = L.yaxis2 ? scale(y2a, ext.y2[0], ext.y2[1], P.y1, P.y0, null) : null;
    const yOf = (t) => (t.yaxis === "y2" && Y2 ? Y2 : Y);

    // -- grid and axes -------------------------------------------------------------------------
    ctx.strokeStyle = GRID; ctx.lineWidth = 1; ctx.fillStyle = TEXT;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    Y.ticks.forEach(([p, s]) => {
      if (ya.showgrid !== false && !Y.cat) { ctx.beginPath(); ctx.moveTo(P.x0, Math.round(p) + 0.5); ctx.lineTo(P.x1, Math.round(p) + 0.5); ctx.stroke(); }
      if (!Y.cat || Y.band >= 9) ctx.fillText(s, P.x0 - 5, p);
    });
    if (Y2) { ctx.textAlign = "left"; Y2.ticks.forEach(([p, s]) => ctx.fillText(s, P.x1 + 5, p)); }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    const xt = X.cat && X.band < 12 ? X.ticks.filter((_, i) => i % Math.ceil(12 / X.band) === 0) : X.ticks;
    xt.forEach(([p, s]) => {
      if (p < P.x0 - 1 || p > P.x1 + 1) return;
      if (!X.cat) { ctx.beginPath(); ctx.moveTo(Math.round(p) + 0.5, P.y0); ctx.lineTo(Math.round(p) + 0.5, P.y1); ctx.stroke(); }
      if (rot) { ctx.save(); ctx.translate(p, P.y1 + 4); ctx.rotate(-rot); ctx.textAlign = "right"; ctx.textBaseline = "middle"; ctx.fillText(s, 0, 0); ctx.restore(); }
      else ctx.fillText(s, p, P.y1 + 4);
    });
    ctx.strokeStyle = AXIS;
    ctx.beginPath(); ctx.moveTo(P.x0, P.y1 + 0.5); ctx.lineTo(P.x1, P.y1 + 0.5); ctx.stroke();
    const axTitle = (ax) => ax && ax.title && ax.title.text;
    if (axTitle(xa) && !rot) { ctx.fillStyle = TEXT; ctx.fillText(axTitle(xa), (P.x0 + P.x1) / 2, P.y1 + 18); }
    [[ya, P.x0 - box.l + 10, -1], [y2a, P.x1 + box.r - 10, 1]].forEach(([ax, x, s]) => {
      if (!axTitle(ax) || Y.cat && ax === ya) return;
      ctx.save(); ctx.translate(x, (P.y0 + P.y1) / 2); ctx.rotate(s * Math.PI / 2); ctx.textAlign = "center"; ctx.textBaseline = "middle";
      ctx.fillText(axTitle(ax), 0, 0); ctx.restore();
    });

    // -- traces --------------------------------------------------------------------------------
    ctx.save();
    ctx.beginPath(); ctx.rect(P.x0, P.y0 - 1, P.x1 - P.x0, P.y1 - P.y0 + 2); ctx.clip();
    if (heat) heatmap(ctx, heat, X, Y, P);
    const bars = data.filter((t) => t.type === "bar");
    let prev = null;
    data.forEach((t, i) => {
      const S = yOf(t), p = pts[i], color = traceColor(t);
      if (t.type === "bar") {
        const k = bars.indexOf(t), n = L.barmode === "group" ? bars.length : 1, slot = X.cat ? X.band * 0.8 : Math.abs(X.f(barw) - X.f(0)) * 0.8;
        const w = Math.max(1, slot / n), colors = (t.marker || {}).color;
        p.x.forEach((x, j) => {
          if (!finite(p.y[j])) return;
          const cx = X.f(x) - slot / 2 + (L.barmode === "group" ? k : 0) * w, y0 = S.f(0), y1 = S.f(p.y[j]);
          ctx.fillStyle = Array.isArray(colors) ? colors[j] : color;
          ctx.fillRect(cx, Math.min(y0, y1), Math.max(w - (n > 1 ? 1 : 0), 0.8), Math.abs(y0 - y1));
        });
      } else if (t.type === "scatter") {
        if (t.cliponaxis === false) { ctx.restore(); ctx.save(); }
        const xy = p.x.map((x, j) => [X.f(x), S.cat || finite(p.y[j]) ? S.f(p.y[j]) : NaN]);
        if ((t.fill === "tonexty" && prev) || t.stackgroup) {
          const under = t.stackgroup ? p.x.map((x, j) => [X.f(x), S.f(p.base[j])]) : prev;
          ctx.fillStyle = t.fillcolor || withAlpha(color, 0.45);
          ctx.beginPath();
          xy.concat(under.slice().reverse()).filter(([, y]) => finite(y)).forEach(([x, y], j) => (j ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
          ctx.closePath(); ctx.fill();
        }
        prev = xy;
        const mode = t.mode || "lines", line = t.line || {};
        if (mode.includes("lines") && line.width !== 0) {
          ctx.strokeStyle = line.color || color; ctx.lineWidth = line.width || 1.6; ctx.setLineDash(DASH[line.dash] || []);
          ctx.beginPath();
          let pen = false;
          xy.forEach(([x, y]) => { if (!finite(y)) { if (!t.connectgaps) pen = false; return; } if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y); pen = true; });
          ctx.stroke(); ctx.setLineDash([]);
        }
        if (t.error_y && t.error_y.array) {
          ctx.strokeStyle = t.error_y.color || color; ctx.lineWidth = t.error_y.thickness || 1;
          ctx.beginPath();
          xy.forEach(([x], j) => {
            const e = t.error_y.array[j];
            if (!finite(e) || !finite(p.y[j])) return;
            const a = S.f(p.y[j] - e), b = S.f(p.y[j] + e);
            ctx.moveTo(x, a); ctx.lineTo(x, b); ctx.moveTo(x - 2, a); ctx.lineTo(x + 2, a); ctx.moveTo(x - 2, b); ctx.lineTo(x + 2, b);
          });
          ctx.stroke();
        }
        if (mode.includes("markers")) {
          const mk = t.marker || {}, mc = typeof mk.color === "string" ? mk.color : line.color || color;
          const small = mode.includes("lines") ? Object.assign({}, mk, { size: mk.size || 4 }) : mk;
          xy.forEach(([x, y]) => { if (finite(y) && finite(x)) marker(ctx, x, y, small, mc); });
        }
      }
    });
    ctx.restore();
    (L.shapes || []).forEach((s) => {
      const S = s.yref === "y2" && Y2 ? Y2 : Y, y = Math.round(S.f(s.y0)) + 0.5, ln = s.line || {};
      if (!finite(y)) return;
      ctx.strokeStyle = ln.color || AXIS; ctx.lineWidth = ln.width || 1; ctx.setLineDash(DASH[ln.dash] || []);
      ctx.beginPath(); ctx.moveTo(P.x0, y); ctx.lineTo(P.x1, y); ctx.stroke(); ctx.setLineDash([]);
    });
    if (heat && heat.colorbar) colorbar(ctx, heat, P);
    annotations(ctx, L, P, W, H);
    div.vp.geo = { P: P, X: X, Y: Y, Y2: Y2, pts: pts, xcats: xcats };
    bind(div, canvas, tip);
    return div;
  }

  function withAlpha(c, a) {
    if (!/^#[0-9a-f]{6}$/i.test(c)) return c;
    return "rgba(" + [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)).join(",") + "," + a + ")";
  }

  function heatmap(ctx, t, X, Y, P) {
    const lut = colorscale(t.colorscale || [[0, "#ffffff"], [1, "#000000"]]), lo = t.zmin, hi = t.zmax;
    const ids = t.x, cw = ids.length > 1 ? Math.abs(X.f(ids[1]) - X.f(ids[0])) : P.x1 - P.x0, gap = cw > 4 ? 1 : 0;
    t.z.forEach((row, i) => {
      const yc = Y.f(t.y[i]), top = Math.floor(yc - Y.band / 2), h = Math.max(1, Math.ceil(Y.band) - (Y.band > 4 ? 1 : 0));
      row.forEach((v, j) => {
        if (!finite(v)) return;
        ctx.fillStyle = lut[Math.max(0, Math.min(255, Math.round(255 * (v - lo) / (hi - lo))))];
        ctx.fillRect(Math.floor(X.f(ids[j]) - cw / 2), top, Math.ceil(cw) - gap, h);
      });
    });
  }

  function colorbar(ctx, t, P) {
    const lut = colorscale(t.colorscale), x = P.x1 + 14, w = (t.colorbar.thickness || 12), h = P.y1 - P.y0;
    for (let k = 0; k < 256; k++) { ctx.fillStyle = lut[k]; ctx.fillRect(x, P.y1 - (k + 1) * h / 256, w, h / 256 + 0.5); }
    ctx.strokeStyle = AXIS; ctx.strokeRect(x + 0.5, P.y0 + 0.5, w, h);
    ctx.fillStyle = TEXT; ctx.textAlign = "left"; ctx.textBaseline = "middle";
    (t.colorbar.tickvals || []).forEach((v, i) => ctx.fillText((t.colorbar.ticktext || [])[i] || String(v), x + w + 4,
      P.y1 - h * (v - t.zmin) / (t.zmax - t.zmin)));
  }

  function annotations(ctx, L, P, W, H) {
    (L.annotations || []).forEach((a) => {
      ctx.fillStyle = (a.font && a.font.color) || TEXT; ctx.textAlign = "center"; ctx.textBaseline = "middle";
      ctx.fillText(a.text, W / 2, H / 2);
    });
  }

  // -- hover and click -------------------------------------------------------------------------
  function pick(div, ev) {
    const g = div.vp.geo, r = ev.target.getBoundingClientRect(), mx = ev.clientX - r.left, my = ev.clientY - r.top, P = g.P;
    if (mx < P.x0 || mx > P.x1 || my < P.y0 - 4 || my > P.y1 + 4) return null;
    const data = div.data, heat = data.find((t) => t.type === "heatmap");
    if (heat) {
      const row = heat.y.findIndex((n) => Math.abs(g.Y.f(n) - my) <= g.Y.band / 2);
      let col = -1, best = Infinity;
      heat.x.forEach((x, j) => { const d = Math.abs(g.X.f(x) - mx); if (d < best) { best = d; col = j; } });
      if (row < 0 || col < 0) return null;
      const flagged = data.some((t) => t.type === "scatter" && (t.x || []).some((x, k) => x === heat.x[col] && t.y[k] === heat.y[row]));
      const v = (heat.customdata || heat.z)[row][col];
      return { x: heat.x[col], y: heat.y[row], mx: mx, my: my,
               lines: [heat.y[row], "window " + heat.x[col], "score " + hoverText(v) + (flagged ? " (flagged)" : "")] };
    }
    let best = null;
    data.forEach((t, i) => (t.x || []).forEach((x) => {
      const d = Math.abs(g.X.f(x) - mx);
      if (best == null || d < best.d) best = { d: d, x: x };
    }));
    if (!best || best.d > 30) return null;
    const lines = [(g.xcats ? "" : "window ") + best.x];
    data.forEach((t, i) => {
      if (t.hoverinfo === "skip" || !t.name) return;
      const j = (t.x || []).findIndex((x) => x === best.x);
      if (j < 0) return;
      const ax = t.yaxis === "y2" ? div.layout.yaxis2 : div.layout.yaxis, y = t.y[j];
      const se = t.error_y && t.error_y.array ? " ± " + hoverText(t.error_y.array[j]) : "", txt = t.text ? " (" + t.text[j] + ")" : "";
      lines.push(t.name + ": " + hoverText(y, ax) + se + txt);
    });
    return { x: best.x, mx: mx, my: my, lines: lines };
  }

  function bind(div, canvas, tip) {
    canvas.addEventListener("mousemove", (ev) => {
      const p = pick(div, ev);
      tip.hidden = !p;
      if (!p) return;
      tip.replaceChildren(...p.lines.map((s) => { const d = document.createElement("div"); d.textContent = s; return d; }));
      const left = p.mx + 14 + 220 > canvas.clientWidth ? p.mx - 14 - tip.offsetWidth : p.mx + 14;
      tip.style.left = Math.max(0, left) + "px"; tip.style.top = (canvas.offsetTop + p.my + 10) + "px";
      canvas.style.cursor = div.vp.opts.onClick && p.y != null ? "pointer" : "default";
    });
    canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
    canvas.addEventListener("click", (ev) => {
      const p = pick(div, ev), onClick = div.vp.opts.onClick;
      if (p && onClick) onClick({ x: p.x, y: p.y });
    });
  }

  let pending = null;
  window.addEventListener("resize", () => {
    if (pending) return;
    pending = requestAnimationFrame(() => {
      pending = null;
      drawn.forEach((div) => { if (div.isConnected && div.vp) draw(div, div.vp.fig, div.vp.opts); });
    });
  });

  window.VigilPlot = { draw: draw };
})();
