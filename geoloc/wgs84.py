"""What counts as a WGS84 latitude/longitude, defined once."""

from __future__ import annotations

LAT_RANGE = (-90.0, 90.0)
LNG_RANGE = (-180.0, 180.0)


def is_latlng(lat: float, lng: float) -> bool:
    """True when LAT, LNG (degrees) lie inside the WGS84 ranges (NaN does not)."""
    return LAT_RANGE[0] <= lat <= LAT_RANGE[1] and LNG_RANGE[0] <= lng <= LNG_RANGE[1]


def is_bbox(lng_min: float, lat_min: float, lng_max: float, lat_max: float) -> bool:
    """True when the box is ordered (min <= max) and both corners are WGS84 positions."""
    return lng_min <= lng_max and lat_min <= lat_max and is_latlng(lat_min, lng_min) and is_latlng(lat_max, lng_max)
