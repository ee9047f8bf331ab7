// Helpers shared by the search page and the evaluation page. Every text from the server or from a
// file name reaches the page through textContent (el / text below), never as HTML.
"use strict";

const geoloc = (() => {
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  async function fetchJSON(url, options) {
    let response;
    try {
      response = await fetch(url, options);
    } catch (err) {
      throw new Error("the server did not answer (" + err.message + ")");
    }
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (!response.ok) {
      const message = body && body.error ? body.error : "HTTP " + response.status;
      const error = new Error(message);
      error.hint = body && body.hint;
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function setStatus(node, message, kind) {
    node.textContent = message || "";
    node.className = "status" + (kind ? " " + kind : "");
  }

  // Great-circle distance in metres (spherical Earth; display only).
  function metres(a, b) {
    const rad = Math.PI / 180, r = 6371008.8;
    const dlat = (b.lat - a.lat) * rad, dlng = (b.lng - a.lng) * rad;
    const h = Math.sin(dlat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dlng / 2) ** 2;
    return 2 * r * Math.asin(Math.min(1, Math.sqrt(h)));
  }

  function formatMetres(m) {
    if (m === null || m === undefined || Number.isNaN(m)) return "-";
    return m >= 1000 ? (m / 1000).toFixed(2) + " km" : Math.round(m) + " m";
  }

  function thumbnailURL(imageId, size) {
    return "/api/images/" + encodeURIComponent(imageId) + "/thumbnail?size=" + (size || 160);
  }

  // A map with the OpenStreetMap tiles as an optional layer: offline it stays grey, the vector layers
  // (GeoJSON from PostGIS) still draw.
  function makeMap(id) {
    const map = L.map(id, { preferCanvas: false }).setView([59.3293, 18.0686], 12);
    const osm = L.tileLayer("https://tile.openstreetmap.org/{z}/{x}/{y}.png", {
      maxZoom: 19, attribution: "&copy; OpenStreetMap contributors",
    });
    osm.addTo(map);
    const control = L.control.layers({}, { "OpenStreetMap tiles": osm }, { collapsed: true }).addTo(map);
    L.control.scale({ imperial: false }).addTo(map);
    document.getElementById(id).leafletMap = map; // for scripts driving the page (tests)
    return { map, control };
  }

  function tooltip(layer, ...lines) {
    const box = el("div", { class: "tip" });
    lines.forEach((line) => box.append(el("div", { text: line })));
    layer.bindTooltip(box);
    return layer;
  }

  return { el, fetchJSON, setStatus, metres, formatMetres, thumbnailURL, makeMap, tooltip };
})();
