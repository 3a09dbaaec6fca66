/* Vigil dashboard: figure builders. Each function takes the JSON views and returns a
   figure {data, layout} in Plotly's format (the subset plot.js draws); nothing here
   fetches or touches the DOM. */
"use strict";

(function () {
  const ZMAX = 3; // drift scores are drawn up to 3x the flagging threshold (1)
  const C = { p50: "#2b6cb0", p95: "#dd6b20", p99: "#c53030", ok: "#2f855a", bad: "#c53030",
              band: "rgba(47,133,90,0.16)", est: "#6b46c1", muted: "#66788a", req: "#9fb3c8" };
  const PALETTE = ["#2b6cb0", "#dd6b20", "#2f855a", "#c53030", "#6b46c1", "#b7791f", "#319795", "#d53f8c"];

  function base(title, extra) {
    return Object.assign({
      title: { text: title, font: { size: 13 }, x: 0.01, xanchor: "left" },
      margin: { l: 52, r: 52, t: 30, b: 34 }, height: 260, font: { size: 11 },
      legend: { orientation: "h", y: -0.22, x: 0, font: { size: 10 } },
      xaxis: { title: { text: "window", standoff: 2 }, automargin: true, zeroline: false },
      hovermode: "x unified", paper_bgcolor: "#fff", plot_bgcolor: "#fff",
    }, extra || {});
  }

  function empty(title, message) {
    return { data: [], layout: base(title, { xaxis: { visible: false }, yaxis: { visible: false },
      annotations: [{ text: message, showarrow: false, font: { size: 12, color: C.muted }, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }] }) };
  }

  const waiting = "waiting for the first evaluated window";

  function traffic(W) {
    const w = W.windows;
    if (!w.id.length) return empty("Requests and errors", waiting);
    const clientRate = w.requests.map((n, i) => (n ? (w.client_errors[i] || 0) / n : null));
    return { data: [
      { type: "bar", name: "requests", x: w.id, y: w.requests, marker: { color: C.req } },
      { type: "scatter", mode: "lines+markers", name: "server error rate", x: w.id, y: w.error_rate, yaxis: "y2", line: { color: C.bad }, connectgaps: true, marker: { size: 4 } },
      { type: "scatter", mode: "lines+markers", name: "client error rate", x: w.id, y: clientRate, yaxis: "y2", line: { color: C.p95, dash: "dot" }, connectgaps: true, marker: { size: 4 } },
    ], layout: base("Requests and errors", {
      yaxis: { title: { text: "requests" }, rangemode: "tozero" },
      yaxis2: { title: { text: "error rate" }, overlaying: "y", side: "right", tickformat: ".0%", rangemode: "tozero", showgrid: false },
    }) };
  }

  function latency(W) {
    const w = W.windows;
    if (!w.id.length) return empty("Latency (ms)", waiting);
    const ms = (a) => a.map((v) => (v == null ? null : v * 1000));
    return { data: [
      { type: "scatter", mode: "lines+markers", name: "p50", x: w.id, y: ms(w.latency_p50), line: { color: C.p50 }, connectgaps: true, marker: { size: 4 } },
      { type: "scatter", mode: "lines+markers", name: "p95", x: w.id, y: ms(w.latency_p95), line: { color: C.p95 }, connectgaps: true, marker: { size: 4 } },
      { type: "scatter", mode: "lines+markers", name: "p99", x: w.id, y: ms(w.latency_p99), line: { color: C.p99 }, connectgaps: true, marker: { size: 4 } },
    ], layout: base("Latency of /predict (ms, bucket upper bounds)", { yaxis: { rangemode: "tozero", title: { text: "ms" } } }) };
  }

  function system(W) {
    const w = W.windows;
    if (!w.id.length) return empty("CPU and memory", waiting);
    const mib = w.memory_bytes.map((v) => (v == null ? null : v / 1048576));
    return { data: [
      { type: "scatter", mode: "lines+markers", name: "CPU (cores)", x: w.id, y: w.cpu_cores, line: { color: C.p50 }, connectgaps: true, marker: { size: 4 } },
      { type: "scatter", mode: "lines+markers", name: "memory (MiB, peak RSS)", x: w.id, y: mib, yaxis: "y2", line: { color: C.est }, connectgaps: true, marker: { size: 4 } },
    ], layout: base("CPU and memory of the serving workers", {
      yaxis: { title: { text: "cores" }, rangemode: "tozero" },
      yaxis2: { title: { text: "MiB" }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false },
    }) };
  }

  /* features x windows; flagged cells get an x on top (a second trace, so tests and
     readers can tell which cells are flagged from the figure itself) */
  const MV = "(multivariate)";
  const PLOG = { type: "log", range: [-10, 0.1], tickvals: [1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1],
                 ticktext: ["1e-10", "1e-8", "1e-6", "1e-4", "0.01", "1"], showgrid: false };
  const pclip = (a) => a.map((p) => (p == null ? null : Math.max(p, 1e-10)));

  /* features x windows (the multivariate check as its own first row); flagged cells get an
     x on top, drawn as a second trace, so that readers and tests can tell them apart */
  function heatmap(W) {
    const w = W.windows;
    const mv = w.multivariate_score.some((v) => v != null);
    const names = (mv ? [MV] : []).concat(W.features);
    const scores = (mv ? [w.multivariate_score] : []).concat(W.drift.score);
    const flags = (mv ? [w.multivariate_flagged.map((f) => (f ? 1 : 0))] : []).concat(W.drift.flagged);
    const height = Math.min(760, Math.max(260, 90 + 13 * names.length));
    if (!w.id.length) return empty("Drift score per feature and window", waiting);
    const z = scores.map((row) => row.map((v) => (v == null ? null : Math.min(Math.max(v, 0), ZMAX))));
    const fx = [], fy = [], ftext = [];
    flags.forEach((row, i) => row.forEach((f, j) => {
      if (f) { fx.push(w.id[j]); fy.push(names[i]); ftext.push(scores[i][j]); }
    }));
    return { data: [
      { type: "heatmap", name: "score", x: w.id, y: names, z: z, customdata: scores, zmin: 0, zmax: ZMAX,
        colorscale: [[0, "#f0f4f8"], [0.2, "#d9e8f5"], [1 / ZMAX, "#f6c453"], [0.6, "#ed8936"], [1, "#9b2c2c"]],
        colorbar: { title: { text: "score" }, tickvals: [0, 1, 2, 3], ticktext: ["0", "1 (flag)", "2", "≥3"], thickness: 12 },
        hovertemplate: "%{y}<br>window %{x}<br>score %{customdata:.3g}<extra></extra>", xgap: 1, ygap: 1 },
      { type: "scatter", mode: "markers", name: "flagged", x: fx, y: fy, customdata: ftext,
        marker: { symbol: "x-thin", size: 8, line: { width: 2, color: "#1a202c" } },
        hovertemplate: "%{y}<br>window %{x}<br>flagged, score %{customdata:.3g}<extra></extra>" },
    ], layout: base("Drift score per feature and window", {
      height: height, hovermode: "closest", margin: { l: 150, r: 20, t: 30, b: 34 },
      yaxis: { autorange: "reversed", type: "category", automargin: true, tickfont: { size: 10 } },
      xaxis: { title: { text: "window", standoff: 2 }, zeroline: false }, legend: { orientation: "h", y: 1.06, x: 1, xanchor: "right" },
    }) };
  }

  function binLabels(ref) {
    if (ref.categories) return ref.categories.concat(["(unseen)"]);
    const e = ref.edges, fmt = (v) => Number(v).toPrecision(3);
    if (!e.length) return ["all"];
    const out = ["< " + fmt(e[0])];
    for (let i = 1; i < e.length; i++) out.push(fmt(e[i - 1]) + "–" + fmt(e[i]));
    out.push("≥ " + fmt(e[e.length - 1]));
    return out;
  }

  function shares(counts, extra) {
    const c = counts.concat(extra == null ? [] : [extra]);
    const t = c.reduce((a, b) => a + b, 0);
    return c.map((v) => (t ? v / t : 0));
  }

  function histogram(F, windowId) {
    const h = F.histograms.find((x) => x.window_id === windowId) || F.histograms[F.histograms.length - 1];
    const title = h ? "Reference vs window " + h.window_id + " (share of rows per bin)"
      : "Reference histogram (no kept window sketch)";
    const labels = binLabels(F.reference);
    const cat = F.kind === "categorical";
    const data = [{ type: "bar", name: "reference", x: labels, y: shares(F.reference.counts, cat ? F.reference.unseen : null),
                    marker: { color: "#9fb3c8" } }];
    if (h) data.push({ type: "bar", name: "window " + h.window_id, x: labels,
                       y: shares(h.counts, cat ? h.unseen : null), marker: { color: C.p95 } });
    return { data: data, layout: base(title, {
      barmode: "group", hovermode: "closest", yaxis: { tickformat: ".0%" },
      xaxis: { type: "category", tickangle: -45, tickfont: { size: 9 }, automargin: true } }) };
  }

  function quality(F) {
    const w = F.windows;
    if (!w.id.length) return empty("Data quality", waiting);
    const data = [
      { type: "scatter", mode: "lines+markers", name: "missing", x: w.id, y: w.missing_rate, line: { color: C.p50 } },
      { type: "scatter", mode: "lines", name: "reference missing", x: w.id, y: w.reference_missing_rate, line: { color: C.p50, dash: "dot" } },
    ];
    if (F.kind === "numeric") data.push({ type: "scatter", mode: "lines+markers", name: "out of reference range", x: w.id, y: w.out_of_range_rate, line: { color: C.p95 } });
    else data.push({ type: "scatter", mode: "lines+markers", name: "unseen categories", x: w.id, y: w.unseen_rate, line: { color: C.p95 } });
    return { data: data, layout: base("Data quality of " + F.feature, { yaxis: { tickformat: ".0%", rangemode: "tozero" } }) };
  }

  function statistic(F) {
    const w = F.windows;
    if (!w.id.length) return empty("Statistic and p-value", waiting);
    const method = w.method.filter((m) => m).slice(-1)[0] || F.method || "";
    const flagged = w.id.filter((_, i) => w.flagged[i]);
    return { data: [
      { type: "scatter", mode: "lines+markers", name: method + " statistic", x: w.id, y: w.statistic, line: { color: C.est } },
      { type: "scatter", mode: "lines", name: "p-value", x: w.id, y: pclip(w.p_value), yaxis: "y2", line: { color: C.p50 } },
      { type: "scatter", mode: "lines", name: "Holm-adjusted p", x: w.id, y: pclip(w.p_holm), yaxis: "y2", line: { color: C.p50, dash: "dot" } },
      { type: "scatter", mode: "markers", name: "flagged", x: flagged, y: flagged.map((id) => w.statistic[w.id.indexOf(id)]),
        marker: { color: C.bad, size: 9, symbol: "x" } },
    ], layout: base("Statistic (" + method + ") and p-value", {
      yaxis: { title: { text: "statistic" }, rangemode: "tozero" },
      yaxis2: Object.assign({ title: { text: "p (clipped at 1e-10)" }, overlaying: "y", side: "right" }, PLOG),
      shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y2", y0: F.alpha, y1: F.alpha, line: { color: C.bad, dash: "dash", width: 1 } }],
    }) };
  }

  function mix(W) {
    const w = W.windows;
    if (!w.id.length) return empty("Prediction mix", waiting);
    const ref = W.reference_predictions || {};
    if (W.task !== "classification") {
      const lo = w.prediction_mean.map((m, i) => (m == null || w.prediction_sd[i] == null ? null : m - w.prediction_sd[i]));
      const hi = w.prediction_mean.map((m, i) => (m == null || w.prediction_sd[i] == null ? null : m + w.prediction_sd[i]));
      const shapes = ref.mean == null ? [] : [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: ref.mean, y1: ref.mean, line: { dash: "dash", color: C.muted } }];
      return { data: [
        { type: "scatter", mode: "lines", name: "mean − sd", x: w.id, y: lo, line: { width: 0 }, showlegend: false },
        { type: "scatter", mode: "lines", name: "mean ± sd", x: w.id, y: hi, fill: "tonexty", fillcolor: "rgba(43,108,176,0.15)", line: { width: 0 } },
        { type: "scatter", mode: "lines+markers", name: "mean prediction", x: w.id, y: w.prediction_mean, line: { color: C.p50 } },
      ], layout: base("Predictions: mean ± sd (dashed: reference mean)", { shapes: shapes }) };
    }
    const data = W.classes.map((c, k) => ({ type: "scatter", mode: "lines", stackgroup: "share", name: "class " + c,
      x: w.id, y: w.class_share[c], line: { color: PALETTE[k % PALETTE.length] } }));
    const shapes = [];
    let acc = 0;
    W.classes.slice(0, -1).forEach((c) => {
      acc += ((ref.class_share || {})[c] || 0);
      shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: acc, y1: acc, line: { dash: "dash", color: "#1a202c", width: 1 } });
    });
    const shifted = w.id.filter((_, i) => w.prediction_flagged[i]);
    data.push({ type: "scatter", mode: "markers", name: "mix shifted (p ≤ α)", x: shifted, y: shifted.map(() => 1.03),
                marker: { symbol: "triangle-down", color: C.bad, size: 9 }, cliponaxis: false });
    return { data: data, layout: base("Class shares (dashed: reference)", { yaxis: { tickformat: ".0%", range: [0, 1.06] }, shapes: shapes }) };
  }

  function confidence(W) {
    const w = W.windows;
    if (!w.id.length) return empty("Confidence", waiting);
    const ref = W.reference_predictions || {};
    if (W.task !== "classification") {
      return { data: [{ type: "scatter", mode: "lines+markers", name: "p-value (KS vs reference)", x: w.id, y: pclip(w.prediction_p_value), line: { color: C.p50 } }],
        layout: base("Prediction distribution check", { yaxis: Object.assign({ title: { text: "p" } }, PLOG),
          shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: W.alpha, y1: W.alpha, line: { color: C.bad, dash: "dash", width: 1 } }] }) };
    }
    const shapes = ref.mean_confidence == null ? [] : [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: ref.mean_confidence, y1: ref.mean_confidence, line: { dash: "dash", color: C.muted } }];
    return { data: [
      { type: "scatter", mode: "lines+markers", name: "mean top-class probability", x: w.id, y: w.mean_confidence, line: { color: C.est } },
      { type: "scatter", mode: "lines", name: "p-value of the mix (χ²)", x: w.id, y: pclip(w.prediction_p_value), yaxis: "y2", line: { color: C.muted, dash: "dot" } },
    ], layout: base("Confidence (dashed: reference)", { yaxis: { range: [0, 1.02], title: { text: "confidence" } },
      yaxis2: Object.assign({ overlaying: "y", side: "right", title: { text: "p" } }, PLOG) }) };
  }

  /* realized metric with its band, the CBPE estimate with its standard error; windows whose
     labels are not final are hollow, and final windows on the worse side of the band red */
  function performance(P, metric) {
    const rows = (P.windows || []).slice().sort((a, b) => a.window_id - b.window_id);
    if (!rows.length) return empty("Performance", "no window scored yet: predictions are scored once a window closes");
    const v = (r, k) => (r[k] && r[k][metric] != null ? r[k][metric] : null);
    const band = rows.filter((r) => r.band && r.band[metric]);
    const pick = (f) => rows.filter(f);
    const okFinal = pick((r) => r.final && r.status === "ok" && !(r.degraded || []).includes(metric) && v(r, "realized") != null);
    const worse = pick((r) => r.final && r.status === "ok" && (r.degraded || []).includes(metric) && v(r, "realized") != null);
    const pending = pick((r) => (!r.final || r.status !== "ok") && v(r, "realized") != null);
    const est = rows.filter((r) => r.estimated && r.estimated[metric] && r.estimated[metric].value != null);
    const x = (a) => a.map((r) => r.window_id);
    const data = [
      { type: "scatter", mode: "lines", name: "band low", x: x(band), y: band.map((r) => r.band[metric][0]), line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
      { type: "scatter", mode: "lines", name: "band (±3 se)", x: x(band), y: band.map((r) => r.band[metric][1]), fill: "tonexty", fillcolor: C.band, line: { width: 0 } },
      { type: "scatter", mode: "lines", name: "realized", x: x(rows), y: rows.map((r) => v(r, "realized")), line: { color: "#4a5568", width: 1 }, connectgaps: false, showlegend: false, hoverinfo: "skip" },
      { type: "scatter", mode: "markers", name: "realized (final)", x: x(okFinal), y: okFinal.map((r) => v(r, "realized")), marker: { color: C.ok, size: 8 } },
      { type: "scatter", mode: "markers", name: "realized, worse than band", x: x(worse), y: worse.map((r) => v(r, "realized")), marker: { color: C.bad, size: 10 } },
      { type: "scatter", mode: "markers", name: "realized (labels pending / too few)", x: x(pending), y: pending.map((r) => v(r, "realized")),
        text: pending.map((r) => (r.final ? r.status : "not final: " + Math.round(100 * r.coverage) + "% labelled")),
        marker: { color: "#fff", size: 8, line: { color: "#4a5568", width: 1.5 } } },
      { type: "scatter", mode: "markers", name: "CBPE estimate ± se", x: x(est), y: est.map((r) => r.estimated[metric].value),
        error_y: { type: "data", array: est.map((r) => r.estimated[metric].se), color: C.est, thickness: 1 }, marker: { color: C.est, symbol: "diamond", size: 7 } },
    ];
    const baseline = (P.baseline || {})[metric];
    const shapes = baseline == null ? [] : [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: baseline, y1: baseline, line: { dash: "dash", color: C.ok, width: 1 } }];
    return { data: data, layout: base(metric + " per window (dashed: validation baseline)", { shapes: shapes, yaxis: { title: { text: metric } } }) };
  }

  function labels(P) {
    const rows = (P.windows || []).slice().sort((a, b) => a.window_id - b.window_id);
    if (!rows.length) return empty("Labels", "no window scored yet");
    const x = rows.map((r) => r.window_id);
    return { data: [
      { type: "bar", name: "label coverage", x: x, y: rows.map((r) => r.coverage), marker: { color: rows.map((r) => (r.final ? "#9fb3c8" : "#e2e8f0")) } },
      { type: "scatter", mode: "lines+markers", name: "label delay p50 (s)", x: x, y: rows.map((r) => (r.label_delay_seconds ? r.label_delay_seconds.p50 : null)), yaxis: "y2", line: { color: C.p95 } },
    ], layout: base("Label coverage and delay (pale bars: not final)", {
      yaxis: { tickformat: ".0%", range: [0, 1.05] },
      yaxis2: { title: { text: "s" }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false } }) };
  }

  window.VigilCharts = { traffic, latency, system, heatmap, histogram, quality, statistic, mix, confidence, performance, labels };
})();
