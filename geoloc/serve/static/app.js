// The search page: upload (or a random query) -> POST /api/search -> map + neighbour list.
"use strict";

(() => {
  const { el, fetchJSON, setStatus, metres, formatMetres, thumbnailURL, makeMap, tooltip } = geoloc;
  const $ = (id) => document.getElementById(id);
  const status = $("status");
  const { map, control } = makeMap("map");
  const areaLayer = L.geoJSON(null, {
    style: (f) => ({ color: f.properties.name === selectedArea() ? "#6a1b9a" : "#888", weight: 2, fillOpacity: 0.05 }),
    interactive: false,
  }).addTo(map);
  const cellLayer = L.featureGroup().addTo(map);
  const resultLayer = L.featureGroup().addTo(map);
  const regionLayer = L.featureGroup().addTo(map);
  control.addOverlay(areaLayer, "areas");
  control.addOverlay(cellLayer, "geo-cells");
  control.addOverlay(resultLayer, "prediction and neighbours");
  let centre = null;
  let lastQuery = null; // {kind: 'file', file} or {kind: 'image', id}

  function regionKind() { return document.querySelector("input[name=region]:checked").value; }
  function selectedArea() { return regionKind() === "area" ? $("area").value : null; }

  // ------------------------------------------------------------------ registry: models and areas
  async function loadModels() {
    const models = await fetchJSON("/api/models");
    const select = $("model");
    select.replaceChildren();
    for (const m of models) {
      const recall = m.recall_at_1 === null ? "" : " - val R@1 " + (100 * m.recall_at_1).toFixed(1) + " %";
      const option = el("option", { value: m.name, text: m.name + " (" + m.backbone + ", " + m.dim + "-d" + recall +
                                                        (m.cells ? ", geo-cells" : "") + ")" });
      option.selected = m.default;
      select.append(option);
    }
  }

  async function loadAreas() {
    const areas = await fetchJSON("/api/areas");
    areaLayer.clearLayers();
    areaLayer.addData(areas);
    const select = $("area");
    select.replaceChildren();
    for (const f of areas.features) select.append(el("option", { value: f.properties.name, text: f.properties.name }));
    if (areas.features.length) map.fitBounds(areaLayer.getBounds());
  }

  // ------------------------------------------------------------------ region filter
  function drawRegion() {
    regionLayer.clearLayers();
    $("circle-options").hidden = regionKind() !== "circle";
    $("area-options").hidden = regionKind() !== "area";
    areaLayer.setStyle((f) => ({ color: f.properties.name === selectedArea() ? "#6a1b9a" : "#888",
                                 weight: f.properties.name === selectedArea() ? 3 : 2, fillOpacity: 0.05 }));
    if (regionKind() === "circle" && centre) {
      L.circle(centre, { radius: Number($("radius").value), color: "#6a1b9a", fill: false, interactive: false,
                        className: "region-circle" })
        .addTo(regionLayer);
      $("centre").textContent = "(" + centre.lat.toFixed(5) + ", " + centre.lng.toFixed(5) + ")";
    }
  }

  function searchParams() {
    const params = new URLSearchParams();
    params.set("model", $("model").value);
    params.set("k", $("k").value);
    if ($("rerank").checked) params.set("rerank", "true");
    const kind = regionKind();
    if (kind === "circle") {
      if (!centre) throw new Error("click the map to place the centre of the circle");
      params.set("near", centre.lat.toFixed(6) + "," + centre.lng.toFixed(6));
      params.set("within", $("radius").value);
    } else if (kind === "area") {
      if (!$("area").value) throw new Error("no area to choose: load one with 'geoloc ingest area'");
      params.set("area", $("area").value);
    }
    return params;
  }

  // ------------------------------------------------------------------ searching
  async function searchFile(file) {
    lastQuery = { kind: "file", file };
    showQuery(URL.createObjectURL(file), file.name, null);
    const body = new FormData();
    body.append("file", file, file.name);
    await run(() => fetchJSON("/api/search?" + searchParams(), { method: "POST", body }));
  }

  async function searchImage(imageId) {
    lastQuery = { kind: "image", id: imageId };
    await run(() => fetchJSON("/api/images/" + encodeURIComponent(imageId) + "/search?" + searchParams()));
  }

  async function run(request) {
    setStatus(status, "searching...", "busy");
    document.body.dataset.state = "searching";
    try {
      const result = await request();
      if (result.query) showQuery(thumbnailURL(result.query.image_id, 320), "image " + result.query.image_id, result.query);
      showResult(result);
      setStatus(status, result.neighbours.length + " nearest images found");
      document.body.dataset.state = "done";
    } catch (err) {
      setStatus(status, "Error: " + err.message + (err.hint ? " - " + err.hint : ""), "error");
      document.body.dataset.state = "error";
    }
  }

  function showQuery(src, name, truth) {
    const facts = el("div", {}, el("div", { text: name }));
    if (truth) {
      facts.append(el("div", { text: "location " + truth.location_id + ", heading " + truth.heading }),
                   el("div", { text: "taken " + (truth.capture_month || "-") + " (" + truth.split + ")" }));
    }
    $("query").replaceChildren(el("img", { src, alt: "query photo" }), facts);
  }

  function swatch(colour) { const s = el("span", { class: "swatch" }); s.style.background = colour; return s; }

  function point(p, style, className, ...lines) {
    return tooltip(L.circleMarker([p.lat, p.lng], { ...style, className }), ...lines).addTo(resultLayer);
  }

  // The most probable geo-cells (models with cell heads): each cell's polygon from PostGIS, filled
  // in proportion to its probability relative to the best cell's, listed with a swatch of that shade.
  const CELL_COLOUR = "#6a1b9a";
  function cellOpacity(p, best) { return best > 0 ? 0.08 + 0.5 * p / best : 0.08; }

  function showCells(cells) {
    cellLayer.clearLayers();
    const list = $("cell-list");
    list.replaceChildren();
    $("cells").hidden = !cells || !cells.length;
    if (!cells || !cells.length) return;
    const best = Math.max(...cells.map((c) => c.probability));
    for (const c of cells) {
      const opacity = cellOpacity(c.probability, best);
      const label = "cell " + c.cell_id + " (level " + c.level + ", H3 " + c.h3 + ")";
      const odds = "p = " + c.probability.toFixed(3) + (c.images === null ? "" : ", " + c.images + " training images");
      if (c.geometry) {
        const shape = L.geoJSON(c.geometry, {
          style: { color: CELL_COLOUR, weight: 1.5, fillColor: CELL_COLOUR, fillOpacity: opacity,
                   className: "cell-polygon" },
        });
        tooltip(shape, "#" + c.rank + " " + label, odds).addTo(cellLayer);
      }
      const sw = swatch(CELL_COLOUR);
      sw.style.opacity = Math.min(1, opacity * 1.6).toFixed(2);
      list.append(el("li", { class: "cell", dataset: { cellId: c.cell_id } }, sw, label + ": " + odds));
    }
  }

  function showResult(res) {
    resultLayer.clearLayers();
    showCells(res.cells);
    const pred = $("prediction");
    pred.replaceChildren();
    const list = $("neighbours");
    list.replaceChildren();
    if (!res.best) {
      pred.append(el("div", { text: "No database image matches the filters." }));
      if (cellLayer.getLayers().length) map.fitBounds(cellLayer.getBounds(), { maxZoom: 16 });
      return;
    }
    const c = res.consensus;
    const where = (p) => p.lat.toFixed(6) + ", " + p.lng.toFixed(6);
    pred.append(
      el("div", {}, swatch("#d32f2f"), el("b", { text: "consensus: " }),
         "location " + c.location_id + " at " + where(c) + " (votes " + c.votes.toFixed(3) + " from " +
         c.count + " of " + c.of + " neighbours)"),
      el("div", {}, swatch("#1565c0"), el("b", { text: "best match: " }),
         "location " + res.best.location_id + " at " + where(res.best) + " (distance " + res.best.distance.toFixed(4) + ")"));
    if (res.query) {
      const truth = res.query;
      pred.append(el("div", {}, swatch("#2e7d32"), el("b", { text: "truth: " }),
        "location " + truth.location_id + "; consensus " + formatMetres(metres(truth, c)) + " away, best match " +
        formatMetres(metres(truth, res.best)) + " away"));
      point(truth, { radius: 9, color: "#2e7d32", weight: 3, fillOpacity: 0.3 }, "truth-marker",
            "truth: location " + truth.location_id);
    }
    for (const n of res.neighbours) {
      point(n, { radius: 5, color: "#ef6c00", weight: 2, fillOpacity: 0.6 }, "neighbour-marker",
            "#" + n.rank + " location " + n.location_id, "distance " + n.distance.toFixed(4));
      const centreHere = el("button", { class: "link centre", type: "button", text: "show on map",
        onclick: () => map.setView([n.lat, n.lng], Math.max(map.getZoom(), 17), { animate: false }) });
      list.append(el("li", { class: "neighbour", dataset: { imageId: n.image_id } },
        el("img", { src: thumbnailURL(n.image_id, 160), alt: "database image " + n.image_id }),
        el("div", { class: "facts" },
          el("div", {}, el("b", { text: "#" + n.rank }), " location " + n.location_id),
          el("div", { text: "distance " + n.distance.toFixed(4) +
                            (n.inliers == null ? "" : ", " + n.inliers + " inliers") }),
          el("div", { text: "heading " + n.heading + ", " + (n.capture_month || "month unknown") }),
          el("div", { text: formatMetres(metres(n, c)) + " from the prediction" }),
          centreHere)));
    }
    point(res.best, { radius: 8, color: "#1565c0", weight: 3, fillOpacity: 0.4 }, "best-marker",
          "best match: location " + res.best.location_id);
    point(c, { radius: 11, color: "#d32f2f", weight: 3, fillOpacity: 0.5 }, "consensus-marker",
          "consensus: location " + c.location_id, c.count + " of " + c.of + " neighbours");
    map.fitBounds(resultLayer.getBounds().pad(0.3), { maxZoom: 17 });
  }

  // ------------------------------------------------------------------ wiring
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) searchFile(e.dataTransfer.files[0]); });
  $("file").addEventListener("change", (e) => { if (e.target.files.length) searchFile(e.target.files[0]); });
  $("random").addEventListener("click", async () => {
    try {
      const q = await fetchJSON("/api/random-query?split=" + encodeURIComponent($("split").value));
      await searchImage(q.image_id);
    } catch (err) {
      setStatus(status, "Error: " + err.message + (err.hint ? " - " + err.hint : ""), "error");
    }
  });
  document.querySelectorAll("input[name=region]").forEach((r) => r.addEventListener("change", drawRegion));
  $("radius").addEventListener("change", drawRegion);
  $("area").addEventListener("change", drawRegion);
  map.on("click", (e) => {
    centre = e.latlng;
    document.querySelector("input[name=region][value=circle]").checked = true;
    drawRegion();
  });
  function again() {
    if (!lastQuery) return;
    if (lastQuery.kind === "file") searchFile(lastQuery.file); else searchImage(lastQuery.id);
  }
  ["model", "k", "rerank", "radius", "area"].forEach((id) => $(id).addEventListener("change", again));
  document.querySelectorAll("input[name=region]").forEach((r) => r.addEventListener("change", again));
  map.on("click", again);

  Promise.all([loadModels(), loadAreas()])
    .then(() => { document.body.dataset.state = "ready"; })
    .catch((err) => setStatus(status, "Error: " + err.message, "error"));
})();
