"""`geoloc search --map`: the predictions and the neighbours on an OpenStreetMap page (folium).

Per query: a red star at the consensus location, a blue marker at the best match, a circle per
neighbour (popup: rank, location, distance and a small thumbnail embedded in the page, so the file
works offline apart from the map tiles), and the search region when one was given.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Sequence

from PIL import Image

from ..errors import InputError

THUMB = 96


def check_path(out: Path) -> Path:
    """Refuse a wrong file name before any work is done."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--map {out}: the file name must end in .html")
    return out


def _thumbnail_html(path: Path) -> str:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
    except (OSError, ValueError):
        return ""
    return f'<br><img src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def write_map(results: Sequence, out: Path) -> Path:
    """Write a self-contained HTML map of RESULTS (from geoloc.retrieval.search.search)."""
    import folium

    out = Path(out)
    check_path(out)
    points = [(n.lat, n.lng) for r in results for n in r.neighbours]
    center = (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)) if points \
        else (59.3293, 18.0686)
    fmap = folium.Map(location=center, zoom_start=14, tiles="OpenStreetMap")
    for res in results:
        name = html.escape(res.image.name)
        group = folium.FeatureGroup(name=name)
        region = res.region
        if region.within_m is not None:
            folium.Circle((region.lat, region.lng), radius=region.within_m, color="grey", fill=False,
                          tooltip=f"search region: {region.within_m:g} m").add_to(group)
        for n in res.neighbours:
            month = n.capture_month.strftime("%Y-%m") if n.capture_month else "-"
            popup = (f"#{n.rank} location {n.location_id}, heading {n.heading}, {month}<br>"
                     f"distance {n.distance:.4f}{_thumbnail_html(n.file)}")
            folium.CircleMarker((n.lat, n.lng), radius=6, color="orange", fill=True, fill_opacity=0.7,
                                tooltip=f"#{n.rank} loc {n.location_id} d={n.distance:.3f}",
                                popup=folium.Popup(popup, max_width=THUMB + 40)).add_to(group)
        if res.best is not None:
            folium.Marker((res.best.lat, res.best.lng), icon=folium.Icon(color="blue", icon="camera"),
                          tooltip=f"{name}: best match, location {res.best.location_id}").add_to(group)
        if res.consensus is not None:
            c = res.consensus
            folium.Marker((c.lat, c.lng), icon=folium.Icon(color="red", icon="star"),
                          tooltip=f"{name}: consensus, location {c.location_id} ({c.count} of {c.of} votes)",
                          popup=folium.Popup(f"{name}{_thumbnail_html(res.image)}", max_width=THUMB + 40)
                          ).add_to(group)
        group.add_to(fmap)
    if len(results) > 1:
        folium.LayerControl().add_to(fmap)
    if points:
        lats, lngs = [p[0] for p in points], [p[1] for p in points]
        fmap.fit_bounds([(min(lats), min(lngs)), (max(lats), max(lngs))], padding=(30, 30))
    out.parent.mkdir(parents=True, exist_ok=True)
    fmap.save(str(out))
    return out
