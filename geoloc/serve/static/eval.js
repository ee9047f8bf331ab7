// The evaluation view: one run of `geoloc evaluate`, every query as a line from truth to prediction.
"use strict";

(() => {
  const { el, fetchJSON, setStatus, formatMetres, thumbnailURL, makeMap, tooltip } = geoloc;
  const $ = (id) => document.getElementById(id);
  const status = $("status");
  const { map, control } = makeMap("map");
  const lines = L.geoJSON(null, { style: styleOf, onEachFeature: bind }).addTo(map);
  control.addOverlay(lines, "predictions");
  const byId = new Map();
  let selected = null;
  let allRuns = [];

  function colour(error) {
    if (error === null || error === undefined) return "#777";
    return error <= 25 ? "#2e7d32" : error <= 100 ? "#f9a825" : error <= 500 ? "#ef6c00" : "#b71c1c";
  }

  function styleOf(f) {
    const chosen = selected === f.properties.id;
    return { color: colour(f.properties.error_m), weight: chosen ? 6 : 3, opacity: chosen ? 1 : 0.8,
             className: "prediction-line" };
  }

  function bind(f, layer) {
    const p = f.properties;
    byId.set(p.id, layer);
    tooltip(layer, "query image " + p.query_image_id + " (location " + p.query_location_id + ")",
            "error " + formatMetres(p.error_m));
    layer.on("click", () => select(p.id));
  }

  function label(p) {
    return formatMetres(p.error_m) + " - query " + p.query_image_id + " (location " + p.query_location_id +
           ", heading " + p.query_heading + ") -> location " + (p.predicted_location_id ?? "-");
  }

  async function loadRuns() {
    const runs = await fetchJSON("/api/eval-runs");
    const select = $("run");
    select.replaceChildren();
    for (const r of runs) {
      select.append(el("option", { value: r.id, text: "#" + r.id + " " + (r.model || "?") + " (" + r.method + ", " +
        r.split + (r.version ? " " + r.version : "") + distractorsText(r.metrics) + ", " + r.predictions +
        " queries)" }));
    }
    if (!runs.length) {
      setStatus(status, "No evaluation runs yet: run 'geoloc evaluate --model NAME' first.");
      document.body.dataset.state = "ready";
      return;
    }
    allRuns = runs;
    await loadRun(runs[0].id);
  }

  function distractorsText(metrics) {
    const d = (metrics || {}).distractors || [];
    return d.length ? " + distractors " + d.join(", ") : "";
  }

  function showMetrics(run) {
    const m = run.metrics || {};
    const rows = [];
    for (const [n, value] of Object.entries(m.recall || {})) rows.push(["Recall@" + n, (100 * value).toFixed(1) + " %"]);
    if (m.database != null) rows.push(["database images", String(m.database) + distractorsText(m)]);
    if (m.top1_error_m) rows.push(["median error", formatMetres(m.top1_error_m.median)]);
    if (m.consensus_error_m) rows.push(["median consensus error", formatMetres(m.consensus_error_m.median)]);
    $("metrics").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: v }))));
  }

  async function loadRun(runId) {
    setStatus(status, "loading run " + runId + "...", "busy");
    document.body.dataset.state = "loading";
    try {
      showMetrics(allRuns.find((r) => r.id === Number(runId)) || {});
      const fc = await fetchJSON("/api/eval-runs/" + encodeURIComponent(runId) + "/predictions");
      byId.clear();
      selected = null;
      lines.clearLayers();
      lines.addData(fc);
      const list = $("worst");
      list.replaceChildren();
      for (const f of fc.features) {
        const p = f.properties;
        list.append(el("li", { dataset: { id: p.id }, text: label(p), onclick: () => select(p.id) }));
      }
      if (fc.features.length) map.fitBounds(lines.getBounds().pad(0.1));
      $("detail").replaceChildren();
      setStatus(status, fc.features.length + " queries");
      document.body.dataset.state = "ready";
    } catch (err) {
      setStatus(status, "Error: " + err.message, "error");
      document.body.dataset.state = "error";
    }
  }

  async function select(id) {
    selected = id;
    lines.setStyle(styleOf);
    const layer = byId.get(id);
    const p = layer.feature.properties;
    layer.bringToFront();
    map.fitBounds(layer.getBounds().pad(0.5), { maxZoom: 17 });
    document.querySelectorAll("#worst li").forEach((li) => li.classList.toggle("selected", Number(li.dataset.id) === id));
    const detail = $("detail");
    const query = el("figure", { class: "query" }, el("img", { src: thumbnailURL(p.query_image_id, 160), alt: "query" }),
                     el("figcaption", { text: "query " + p.query_image_id }));
    detail.replaceChildren(el("h3", { text: label(p) }), el("div", { class: "images" }, query));
    if (p.predicted_location_id === null) return;
    try {
      const images = await fetchJSON("/api/locations/" + encodeURIComponent(p.predicted_location_id) + "/images");
      const row = el("div", { class: "images predicted" });
      for (const im of images) {
        row.append(el("figure", { class: im.heading === p.query_heading ? "same-heading" : "" },
          el("img", { src: thumbnailURL(im.image_id, 160), alt: "image " + im.image_id }),
          el("figcaption", { text: "heading " + im.heading + ", " + (im.capture_month || "-") })));
      }
      detail.append(el("div", { text: "predicted location " + p.predicted_location_id + " (its images; the query's heading outlined):" }), row);
      document.body.dataset.state = "selected";
    } catch (err) {
      setStatus(status, "Error: " + err.message, "error");
    }
  }

  $("run").addEventListener("change", (e) => loadRun(e.target.value));
  loadRuns().catch((err) => setStatus(status, "Error: " + err.message, "error"));
})();
