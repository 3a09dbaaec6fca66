/* Vigil dashboard: fetches the JSON views under /monitoring every few seconds and draws
   them (figures in charts.js); operator actions go to /admin with the bearer token the
   operator typed (kept in this tab's sessionStorage only). Text from the server is only
   ever set as textContent, and only http(s) trace links become anchors. */
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const intParam = (name, dflt, lo, hi) => {
    const v = parseInt(params.get(name) || "", 10);
    return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : dflt;
  };
  const LIMIT = intParam("windows", 200, 1, 1000);
  const REFRESH_MS = intParam("refresh", 5, 1, 3600) * 1000;
  const API = new URL("../", location.href); // the page lives at <root>/dashboard/
  const KEEP_SKETCHES = 200; // windows that can be adopted as the drift reference
  const $ = (id) => document.getElementById(id);
  const state = { token: sessionStorage.getItem("vigil-token") || "", feature: null, histWindow: null,
                  metric: null, data: {}, feature_view: null, busy: false, renders: 0, lastRenderMs: null,
                  errors: [] };
  window.vigil = state; // read by the browser test and the benchmark

  // -- helpers ------------------------------------------------------------------------------
  function el(tag, text, attrs) {
    const e = document.createElement(tag);
    if (text != null) e.textContent = String(text);
    Object.entries(attrs || {}).forEach(([k, v]) => { if (v != null) e.setAttribute(k, v); });
    return e;
  }
  const fmt = (v, d) => (v == null || Number.isNaN(v) ? "–" : typeof v !== "number" ? String(v)
    : Number.isInteger(v) ? v.toLocaleString("en") : Number(v).toPrecision(d || 3));
  const pct = (v) => (v == null ? "–" : (100 * v).toFixed(1) + "%");
  const time = (t) => (t == null ? "–" : new Date(t * 1000).toLocaleTimeString());
  function ago(t) {
    if (t == null) return "–";
    const s = Math.max(0, Date.now() / 1000 - t);
    return s < 90 ? Math.round(s) + " s ago" : s < 5400 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
  }

  async function get(path) {
    const r = await fetch(new URL(path, API), { headers: { accept: "application/json" }, cache: "no-store" });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(path.split("?")[0] + ": HTTP " + r.status + (body.error ? " (" + body.error + ")" : ""));
    return body;
  }

  function banner(id, text, isError) {
    const b = $(id);
    b.hidden = !text;
    b.textContent = text || "";
    b.classList.toggle("error", !!isError);
  }

  const drawnKeys = {};
  function plot(id, fig, opts) { // a figure equal to the one on screen is not drawn again
    const div = $(id), key = JSON.stringify(fig);
    if (drawnKeys[id] !== key) {
      drawnKeys[id] = key;
      VigilPlot.draw(div, fig, opts);
    }
    return div;
  }

  function drillDown(cell) { // a heatmap cell clicked; the multivariate row has no drill-down
    if (!state.data.W.features.includes(cell.y)) return;
    state.feature = cell.y;
    state.histWindow = cell.x;
    loadFeature().catch((e) => banner("error", e.message, true));
  }

  /* the charts on screen first, then the others one at a time, letting the browser paint
     and answer input in between */
  const nextFrame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  async function drawAll(charts) {
    const onScreen = (id) => $(id).getBoundingClientRect().top < window.innerHeight;
    charts.filter(([id]) => onScreen(id)).forEach(([id, fig, opts]) => plot(id, fig(), opts));
    if (state.firstScreenAt == null) {
      state.firstScreenAt = performance.now();
      performance.mark("vigil:first-screen");
    }
    for (const [id, fig, opts] of charts.filter(([id]) => !onScreen(id))) {
      await nextFrame();
      plot(id, fig(), opts);
    }
  }

  // -- operator actions -----------------------------------------------------------------------
  const MODES = { "read-only": ["read-only", ""], token: ["token set", ""], operator: ["operator", "operator"],
                  refused: ["token refused", "refused"] };
  function setMode(mode) {
    state.mode = state.token ? mode : "read-only";
    const [text, cls] = MODES[state.mode];
    $("mode").textContent = text;
    $("mode").className = "badge " + cls;
    $("token-clear").hidden = !state.token;
    $("readonly-note").hidden = !!state.token;
    document.querySelectorAll("button.act").forEach((b) => {
      b.disabled = !state.token;
      b.title = state.token ? "" : "read-only: enter the operator token to act";
    });
  }

  async function act(method, path, body, what) {
    if (!state.token) { banner("action-status", what + ": read-only, enter the operator token first", true); return false; }
    let r;
    try {
      r = await fetch(new URL(path, API), { method: method, body: body ? JSON.stringify(body) : undefined,
        headers: { "content-type": "application/json", authorization: "Bearer " + state.token } });
    } catch (e) { banner("action-status", what + " failed: " + e.message, true); return false; }
    const data = await r.json().catch(() => ({}));
    if (r.status === 401 || r.status === 403) {
      setMode("refused");
      banner("action-status", what + " refused (HTTP " + r.status + "): " + (data.error || "not allowed") + ". Nothing changed.", true);
      return false;
    }
    if (!r.ok) { banner("action-status", what + " failed (HTTP " + r.status + "): " + (data.error || ""), true); return false; }
    setMode("operator");
    banner("action-status", what + ": done", false);
    refresh();
    return true;
  }

  // -- overview ---------------------------------------------------------------------------------
  function card(title, lines) {
    const c = el("div", null, { class: "card" });
    c.append(el("h4", title));
    lines.forEach(([text, cls, big]) => c.append(el("div", text, { class: (big ? "big " : "line ") + (cls || "") })));
    return c;
  }

  function lastFinal(P) {
    return (P.windows || []).filter((r) => r.final && r.status === "ok").sort((a, b) => b.window_id - a.window_id)[0];
  }

  function overview(S, W, P, A) {
    const w = W.windows, n = w.id.length, last = n - 1;
    const base = Object.entries(S.baseline || {}).slice(0, 4).map(([k, v]) => [k + " " + fmt(v), ""]);
    const firing = A.firing || [];
    const pending = (A.alerts || []).filter((a) => a.state === "pending");
    const cards = [
      card("Model", [[S.model, "", true], [S.task + ", " + S.features + " features", ""],
                     ["reference: " + fmt(S.reference_rows) + " rows", ""]]),
      card("Baseline" + (S.in_sample_baseline ? " (in-sample: no performance alerts)" : " (validation)"),
           base.length ? base : [["none", "muted"]]),
      card("Windows", [[fmt(S.windows.window_rows) + " rows or " + fmt(S.windows.window_seconds) + " s", "", true],
                       [n + " evaluated window(s) shown", ""],
                       ...(S.progress ? [[S.progress, "muted"]] : []),
                       ["queue " + S.monitor_queue.depth + ", dropped rows " + S.monitor_queue.dropped_rows,
                        S.monitor_queue.dropped_rows ? "warn" : ""]]),
      card("Alerts", [[firing.length + " firing", firing.length ? "bad" : "ok", true],
                      ...firing.slice(0, 4).map((a) => [a.rule + (a.instance ? " [" + a.instance + "]" : ""), "bad"]),
                      [pending.length + " pending, " + (A.silences || []).length + " silence(s)", pending.length ? "warn" : "muted"]]),
    ];
    if (n) {
      const drifted = w.drifted[last] || [];
      const perf = lastFinal(P);
      const metric = state.metric;
      let perfLine = ["performance: no final labelled window yet", "muted"];
      if (perf && metric && perf.realized) {
        const worse = (perf.degraded || []).includes(metric);
        const side = (perf.band_status || {})[metric] || "";
        perfLine = ["window " + perf.window_id + " " + metric + " " + fmt(perf.realized[metric]) + (worse ? " (" + side + " band)" : " (within band)"), worse ? "bad" : "ok"];
      }
      cards.push(card("Last window (" + w.id[last] + ", " + ago(w.ended_at[last]) + ")", [
        [w.too_small[last] ? "too small to judge (" + w.rows[last] + " rows)"
          : drifted.length ? "drifted: " + drifted.join(", ") : "no feature drifted", drifted.length ? "bad" : "ok"],
        [w.multivariate_flagged[last] ? "multivariate drift" : "multivariate: ok", w.multivariate_flagged[last] ? "bad" : "ok"],
        [w.prediction_flagged[last] ? "prediction mix shifted (p " + fmt(w.prediction_p_value[last], 2) + ")" : "predictions: stable",
         w.prediction_flagged[last] ? "warn" : "ok"],
        ["errors " + pct(w.error_rate[last]) + ", p99 " + fmt(w.latency_p99[last] == null ? null : 1000 * w.latency_p99[last]) + " ms",
         w.error_rate[last] ? "warn" : ""],
        perfLine]));
    }
    $("overview").replaceChildren(...cards);
  }

  // -- drift drill-down ----------------------------------------------------------------------------
  function fillSelect(sel, values, current, label) {
    const key = values.join("\u0000");
    if (sel.dataset.key !== key) {
      sel.replaceChildren(...values.map((v) => el("option", label ? label(v) : v, { value: v })));
      sel.dataset.key = key;
    }
    if (current != null && values.map(String).includes(String(current))) sel.value = String(current);
  }

  function defaultFeature(W) {
    const s = W.drift.score, last = W.windows.id.length - 1;
    if (last < 0) return W.features[0];
    let best = 0;
    s.forEach((row, i) => { if ((row[last] || 0) > (s[best][last] || 0)) best = i; });
    return W.features[best];
  }

  function fetchFeature() {
    const W = state.data.W;
    if (!W || !W.features.length) return Promise.resolve(null);
    if (!state.feature || !W.features.includes(state.feature)) state.feature = defaultFeature(W);
    return get("monitoring/features/" + encodeURIComponent(state.feature) + "?limit=" + LIMIT + "&histograms=20");
  }

  async function drawFeature(F) {
    if (!F) return;
    state.feature_view = F;
    fillSelect($("feature"), state.data.W.features, F.feature);
    const ids = F.histograms.map((h) => h.window_id).reverse();
    if (!ids.includes(state.histWindow)) state.histWindow = ids[0] == null ? null : ids[0];
    fillSelect($("hist-window"), ids, state.histWindow);
    const w = F.windows, k = w.id.length - 1;
    $("feature-verdict").textContent = k < 0 ? "" : (w.flagged[k] ? "flagged in window " : "not flagged in window ") + w.id[k] +
      ": " + (w.method[k] || F.method) + " statistic " + fmt(w.statistic[k]) + ", p " + fmt(w.p_value[k], 2) +
      ", Holm p " + fmt(w.p_holm[k], 2) + ", effect " + fmt(w.effect[k]) + " (floor " + F.effect_floor + "), score " + fmt(w.score[k]);
    $("feature-verdict").className = "verdict " + (k >= 0 && w.flagged[k] ? "bad" : "ok");
    await drawAll([["chart-hist", () => VigilCharts.histogram(F, state.histWindow)],
                   ["chart-quality", () => VigilCharts.quality(F)], ["chart-stat", () => VigilCharts.statistic(F)]]);
  }

  function loadFeature() {
    return fetchFeature().then(drawFeature);
  }

  // -- alerts -------------------------------------------------------------------------------------
  function traces(td, ids, links) {
    (ids || []).forEach((id, i) => {
      const url = (links || [])[i];
      if (typeof url === "string" && /^https?:\/\//i.test(url)) {
        const a = el("a", id.slice(0, 8) + "…", { href: url, target: "_blank", rel: "noopener noreferrer", title: id, "data-trace-id": id });
        td.append(a);
      } else td.append(el("code", id.slice(0, 8) + "… ", { title: id }));
    });
  }

  function button(text, handler) {
    const b = el("button", text, { type: "button", class: "act" });
    b.addEventListener("click", handler);
    return b;
  }

  /* rows are rebuilt only when their data changed, so a button stays put between refreshes */
  function table(id, items, cols, message, build) {
    const tbody = $(id).tBodies[0];
    const key = JSON.stringify(items);
    if (tbody.dataset.key === key) return;
    tbody.dataset.key = key;
    if (!items.length) {
      const tr = el("tr");
      tr.append(el("td", message, { colspan: cols, class: "empty" }));
      tbody.replaceChildren(tr);
    } else tbody.replaceChildren(...items.map(build));
  }

  function threshold(t) {
    if (!t) return "–";
    if (t.bound) return t.bound;
    return Object.entries(t).filter(([, v]) => v != null).map(([k, v]) => k + " " + fmt(v)).join(", ");
  }

  function alerts(A, W) {
    const current = (A.alerts || []).filter((a) => a.state === "firing" || a.state === "pending");
    table("alerts-table", current, 11, "nothing firing or pending", (a) => {
      const tr = el("tr", null, { "data-rule": a.rule, "data-state": a.state });
      const ev = a.evidence || {};
      [[a.state, "state-" + a.state], [a.rule], [a.instance || ""], [a.severity], [time(a.since)],
       [ev.window ? ev.window.id : a.last_window], [fmt(a.value) + (ev.reference != null ? " (ref " + fmt(ev.reference) + ")" : "")],
       [threshold(ev.threshold)]].forEach(([t, cls]) => tr.append(el("td", t, { class: cls })));
      const td = el("td", null, { class: "traces" });
      traces(td, a.trace_ids || ev.trace_ids, a.trace_links || ev.trace_links);
      tr.append(td, el("td", a.acknowledged_by || (a.acknowledged_at ? "yes" : "")));
      const acts = el("td");
      if (a.state === "firing" && !a.acknowledged_at) acts.append(button("Acknowledge", () => act("POST", "admin/alerts/ack", { rule: a.rule, instance: a.instance, by: "dashboard" }, "acknowledge " + a.rule)));
      acts.append(button("Silence 1 h", () => act("POST", "admin/silences", { rule: a.rule, instance: a.instance, seconds: 3600, by: "dashboard", reason: "from the dashboard" }, "silence " + a.rule)));
      tr.append(acts);
      return tr;
    });

    table("events-table", A.recent || [], 8, "no transitions yet", (e) => {
      const tr = el("tr", null, { "data-rule": e.rule, "data-state": e.state });
      const ev = e.evidence || {};
      [[time(e.at)], [e.rule], [e.instance || ""], [e.state, "state-" + e.state], [e.window_id], [fmt(ev.value)]]
        .forEach(([t, cls]) => tr.append(el("td", t, { class: cls })));
      const td = el("td", null, { class: "traces" });
      traces(td, ev.trace_ids, ev.trace_links);
      tr.append(td, el("td", e.notified ? "yes" : "no"));
      return tr;
    });

    table("silences-table", A.silences || [], 7, "no active silence", (s) => {
      const tr = el("tr", null, { "data-silence": s.id });
      [s.id, s.rule, s.instance || "all", time(s.until), s.created_by || "", s.reason || ""].forEach((t) => tr.append(el("td", t)));
      const td = el("td");
      td.append(button("End", () => act("DELETE", "admin/silences/" + s.id, null, "end silence " + s.id)));
      tr.append(td);
      return tr;
    });

    table("rules-table", A.rules || [], 6, "no rules", (r) => {
      const tr = el("tr");
      [r.name, r.condition, r.for_windows, r.resolve_windows, r.severity, r.derivation || ""].forEach((t) => tr.append(el("td", t)));
      return tr;
    });
    fillSelect($("silence-rule"), ["*"].concat((A.rules || []).map((r) => r.name)), $("silence-rule").value || "*");
    const w = W.windows;
    const adoptable = w.id.filter((_, i) => !w.too_small[i]).slice(-KEEP_SKETCHES).reverse();
    fillSelect($("rebaseline-window"), adoptable, $("rebaseline-window").value, (id) => "window " + id);
  }

  // -- the refresh cycle ---------------------------------------------------------------------------
  function metrics(S, P) {
    const seen = new Set();
    (P.windows || []).forEach((r) => Object.keys(r.realized || {}).concat(Object.keys(r.estimated || {})).forEach((k) => seen.add(k)));
    Object.keys(S.baseline || {}).forEach((k) => seen.add(k));
    return Array.from(seen);
  }

  async function renderAll() {
    const { S, W, P, A } = state.data;
    $("model").textContent = S.model + " (" + S.task + ")";
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    const ms = metrics(S, P);
    if (!state.metric || !ms.includes(state.metric)) state.metric = S.task === "classification" ? (ms.includes("accuracy") ? "accuracy" : ms[0]) : (ms.includes("mae") ? "mae" : ms[0]);
    fillSelect($("metric"), ms, state.metric);
    overview(S, W, P, A);
    alerts(A, W);
    setMode(state.mode);
    await drawAll([
      ["chart-traffic", () => VigilCharts.traffic(W)], ["chart-latency", () => VigilCharts.latency(W)],
      ["chart-system", () => VigilCharts.system(W)], ["chart-heatmap", () => VigilCharts.heatmap(W), { onClick: drillDown }],
      ["chart-mix", () => VigilCharts.mix(W)], ["chart-confidence", () => VigilCharts.confidence(W)],
      ["chart-performance", () => VigilCharts.performance(P, state.metric)], ["chart-labels", () => VigilCharts.labels(P)]]);
  }

  async function refresh() {
    if (state.busy) return;
    state.busy = true;
    const t0 = performance.now();
    try {
      const [S, W, P, A] = await Promise.all([get("monitoring/status"), get("monitoring/windows?limit=" + LIMIT),
        get("monitoring/performance?limit=" + LIMIT), get("monitoring/alerts?limit=50")]);
      state.data = { S, W, P, A };
      performance.mark("vigil:views");
      const feature = fetchFeature(); // while the main charts are drawn
      await renderAll();
      await drawFeature(await feature);
      banner("error", "");
    } catch (e) {
      state.errors.push(e.message);
      banner("error", "could not refresh: " + e.message + " (showing the last data)", true);
    } finally {
      state.busy = false;
      state.lastRenderMs = performance.now() - t0;
      state.renderedAt = performance.now(); // ms since navigation: when the page was last fully drawn
      performance.mark("vigil:rendered");
      state.renders += 1;
      document.body.dataset.renders = String(state.renders);
    }
  }

  state.refresh = refresh; // the benchmark times a refresh cycle

  // -- wiring ----------------------------------------------------------------------------------------
  function start() {
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      state.token = $("token").value.trim();
      $("token").value = "";
      if (state.token) sessionStorage.setItem("vigil-token", state.token); else sessionStorage.removeItem("vigil-token");
      setMode("token");
      banner("action-status", state.token ? "token set for this tab; the server checks it on every action" : "", false);
    });
    $("token-clear").addEventListener("click", () => {
      state.token = "";
      sessionStorage.removeItem("vigil-token");
      setMode("read-only");
    });
    $("feature").addEventListener("change", (e) => { state.feature = e.target.value; state.histWindow = null; loadFeature().catch((x) => banner("error", x.message, true)); });
    $("hist-window").addEventListener("change", (e) => {
      state.histWindow = parseInt(e.target.value, 10);
      if (state.feature_view) plot("chart-hist", VigilCharts.histogram(state.feature_view, state.histWindow));
    });
    $("metric").addEventListener("change", (e) => { state.metric = e.target.value; renderAll(); });
    $("silence-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const rule = $("silence-rule").value;
      act("POST", "admin/silences", { rule: rule, seconds: parseInt($("silence-seconds").value, 10), by: "dashboard", reason: "from the dashboard" }, "silence " + rule);
    });
    $("rebaseline-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const id = parseInt($("rebaseline-window").value, 10);
      if (!Number.isFinite(id)) return;
      if (!window.confirm("Adopt window " + id + " as the drift reference? Drift is then judged against it.")) return;
      act("POST", "admin/rebaseline", { window_id: id, by: "dashboard" }, "re-baseline to window " + id);
    });
    setMode("token");
    refresh();
    setInterval(() => { if ($("auto").checked && !document.hidden) refresh(); }, REFRESH_MS);
  }

  start(); // this script is the last element of <body>: the page is there
})();
