"""`geoloc search --map`: the predictions and the neighbours on an OpenStreetMap page (folium).

Per query: a red circle at the consensus location, a blue one at the best match, an orange circle
per neighbour (popup: rank, location, file path, distance and a small thumbnail embedded in the page),
the search region when one was given, and a legend naming each query photo. After a hybrid search
(a model with cell heads) the most probable geo-cells are drawn too: each cell's polygon from PostGIS
(geoloc/sql/cells/cell_polygons.sql), filled in proportion to its probability, with its rank, id, level and
probability as tooltip.

File names and titles are user data: every string reaches the page through geoloc.htmlsafe
(`text` for HTML, `js_template` for the HTML folium puts between backticks in its script), so a
name like `</script>` or `${...}` shows as text and never runs.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Sequence

from .. import htmlsafe
from ..errors import InputError
from ..months import iso_month

THUMB = 96
DEFAULT_CENTER = (59.3293, 18.0686)


def check_path(out: Path) -> Path:
    """Refuse a wrong file name before any work is done."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--map {out}: the file name must end in .html")
    return out


def _thumbnail_html(path: Path) -> str:
    from ..imagefile import open_image

    try:
        im = open_image(path)
        im.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
    except (OSError, ValueError, InputError):
        return ""  # a missing or broken file must not stop the map
    return f'<br><img src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}" alt="">'


def _tooltip(fragment: str):
    import folium

    return folium.Tooltip(htmlsafe.js_template(fragment))


def _popup(fragment: str):
    import folium

    return folium.Popup(htmlsafe.js_template(fragment), max_width=THUMB + 160)


def _legend(results: Sequence, title: str | None) -> str:
    rows = []
    for res in results:
        where = "no prediction"
        if res.consensus is not None:
            c = res.consensus
            where = f"consensus location {c.location_id} at {c.lat:.5f}, {c.lng:.5f}"
        rows.append(f"<li><span class='query'>{htmlsafe.text(res.image)}</span>: {htmlsafe.text(where)}</li>")
    head = f"<b>{htmlsafe.text(title)}</b>" if title else ""
    style = ("position:absolute;bottom:12px;left:12px;z-index:1000;max-width:45%;max-height:30%;overflow:auto;"
             "background:rgba(255,255,255,.9);padding:6px 10px;font:12px sans-serif;border-radius:4px")
    return f"<div id='geoloc-legend' style='{style}'>{head}<ul style='margin:4px 0;padding-left:16px'>" \
           f"{''.join(rows)}</ul></div>"


CELL_COLOUR = "#6a1b9a"
CELL_CLASS = "geoloc-cell"  # the class of every cell polygon's SVG path


def _cell_shapes(results: Sequence, url: str | None) -> dict[int, dict]:
    """The polygons of every cell the RESULTS list (none without a hybrid search)."""
    ids = [c.cell_id for r in results for c in getattr(r, "cells", None) or []]
    if not ids:
        return {}
    from ..db.engine import begin
    from .cell_maps import cell_polygons

    with begin(url) as conn:
        return cell_polygons(conn, ids)


def _add_cells(group, res, name: str, shapes: dict[int, dict]) -> None:
    import folium

    cells = getattr(res, "cells", None) or []
    best = max((c.probability for c in cells), default=0.0)
    for c in cells:
        shape = shapes.get(c.cell_id)
        if shape is None:
            continue
        opacity = 0.08 + 0.5 * c.probability / best if best > 0 else 0.08
        style = {"color": CELL_COLOUR, "weight": 1.5, "fillColor": CELL_COLOUR, "fillOpacity": round(opacity, 3),
                 "className": CELL_CLASS}
        feature = {"type": "Feature", "geometry": shape["geometry"],
                   "properties": {"cell_id": c.cell_id, "rank": c.rank, "level": c.level,
                                  "probability": c.probability}}
        folium.GeoJson(feature, style_function=lambda _f, style=style: style,
                       tooltip=_tooltip(f"{name}: #{c.rank} cell {c.cell_id} (level {c.level}, H3 "
                                        f"{htmlsafe.text(c.h3)}) p={c.probability:.3f}")).add_to(group)


def write_map(results: Sequence, out: Path, title: str | None = None, url: str | None = None) -> Path:
    """Write an HTML map of RESULTS (from geoloc.retrieval.search.search, or hybrid_search: then with the
    top cells' polygons, read from the database at URL); TITLE heads the legend."""
    import folium

    out = Path(out)
    check_path(out)
    shapes = _cell_shapes(results, url)
    points = [(n.lat, n.lng) for r in results for n in r.neighbours]
    center = (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)) if points \
        else DEFAULT_CENTER
    fmap = folium.Map(location=center, zoom_start=14, tiles="OpenStreetMap")
    root = fmap.get_root()
    root.title = htmlsafe.text(title or "geoloc search")
    for res in results:
        name = htmlsafe.text(res.image.name)
        group = folium.FeatureGroup(name=name)  # the layer control shows it as HTML
        _add_cells(group, res, name, shapes)
        region = res.region
        if region.within_m is not None:
            folium.Circle((region.lat, region.lng), radius=region.within_m, color="grey", fill=False,
                          tooltip=_tooltip(f"search region: {region.within_m:g} m")).add_to(group)
        for n in res.neighbours:
            month = iso_month(n.capture_month)
            popup = (f"#{n.rank} location {n.location_id}, heading {n.heading}, {month}<br>"
                     f"<span style='word-break:break-all'>{htmlsafe.text(n.file)}</span><br>"
                     f"distance {n.distance:.4f}{_thumbnail_html(n.file)}")
            folium.CircleMarker((n.lat, n.lng), radius=6, color="orange", fill=True, fill_opacity=0.7,
                                tooltip=_tooltip(f"#{n.rank} loc {n.location_id} d={n.distance:.3f}"),
                                popup=_popup(popup)).add_to(group)
        if res.best is not None:
            folium.CircleMarker((res.best.lat, res.best.lng), radius=9, color="blue", weight=3, fill=False,
                                tooltip=_tooltip(f"{name}: best match, location {res.best.location_id}")
                                ).add_to(group)
        if res.consensus is not None:
            c = res.consensus
            folium.CircleMarker((c.lat, c.lng), radius=12, color="red", weight=3, fill=True, fill_opacity=0.3,
                                tooltip=_tooltip(f"{name}: consensus, location {c.location_id} "
                                                 f"({c.count} of {c.of} votes)"),
                                popup=_popup(f"<span style='word-break:break-all'>{htmlsafe.text(res.image)}</span>"
                                             f"{_thumbnail_html(res.image)}")
                                ).add_to(group)
        group.add_to(fmap)
    if len(results) > 1:
        folium.LayerControl().add_to(fmap)
    root.html.add_child(folium.Element(_legend(results, title)))
    if points:
        lats, lngs = [p[0] for p in points], [p[1] for p in points]
        fmap.fit_bounds([(min(lats), min(lngs)), (max(lats), max(lngs))], padding=(30, 30))
    out.parent.mkdir(parents=True, exist_ok=True)
    fmap.save(str(out))
    return out
