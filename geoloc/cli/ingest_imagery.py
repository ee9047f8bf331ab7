"""Commands registered on `geoloc ingest` for imagery: import image folders, crop screenshots, capture."""

from __future__ import annotations

from pathlib import Path

import click

from ..imagery import capture as C
from ..imagery.backends import BACKENDS
from ..imagery.backends.browser import BrowserSettings
from ..imagery.backends.static_api import StaticApiSettings
from ..imagery.crop import DEFAULT_SIZE
from ..imagery.importer import DEFAULT_MIN_IMAGES
from ..splits import SPLITS
from ..errors import InputError
from .ingest import ingest  # noqa: F401


def _echo_failures(failures) -> None:
    for rel, reason in failures:
        click.echo(f"{rel}: {reason}", err=True)


@ingest.command()
@click.argument("folder", required=False, type=click.Path(path_type=Path))
@click.option("--min-images", type=int, default=DEFAULT_MIN_IMAGES, show_default=True,
              help="Skip (location, heading) groups with fewer images than this, as the original did.")
@click.option("--strict", is_flag=True, help="Any bad file fails the whole import (nothing is stored).")
@click.option("--split", type=click.Choice(SPLITS),
              help="Split of files in folders whose name gives none (a folder's own name wins).")
@click.option("--version", "version", metavar="LABEL",
              help="Version (e.g. v2) of files in folders whose name gives none (a folder's own name wins).")
def images(folder: Path | None, min_images: int, strict: bool, split: str | None, version: str | None) -> None:
    """Import a folder tree of captured images (original names and layout).

    File names: <location>_<heading>_<time>_<Month YYYY>_<scraped at>.jpg. Split and version come
    from the nearest folder named Cropped_<Split>_<version>_buffer_<m> (also Cropped_Test_v2_buffer60);
    files in folders that name none need --split and --version, otherwise they are refused, never
    stored under a guess. Where a folder's name and an option disagree the name wins and a note says
    so. Locations must be imported first. Bad files (bad names, values out of a column's range,
    symlinks, FIFOs, folders named like images, corrupt or oversized images) are listed one per line
    on stderr and skipped; re-importing the same tree adds nothing. FOLDER defaults to
    $GEOLOC_IMAGES_ROOT (the shared Stockholm images).

    Example: geoloc ingest images ../shared/data/stockholm/images
    """
    from .. import config
    from ..imagery.importer import ingest_images

    try:
        res = ingest_images(folder or config.images_root(), min_images=min_images, strict=strict, progress=True,
                            split=split, version=version)
    except InputError as exc:
        _echo_failures(getattr(exc, "failures", ()))
        raise
    _echo_failures(res.failures)
    click.echo(f"{res.found} files under {res.root}: imported {res.imported}, skipped {res.skipped}, "
               f"failed {res.failed} ({res.seconds:.1f} s)")
    for (split_, version_), n in res.per_split.items():
        click.echo(f"  {split_ or '-'} {version_}: {n} imported")
    for reason, n in res.skip_reasons().most_common():
        click.echo(f"  skipped {n}: {reason}")
    for name, n in res.fallback_folders.items():
        click.echo(f"  folder '{name}': {n} file(s) took --split {split} --version {version} (its name gives none)")
    for name, note in res.option_conflicts.items():
        click.echo(f"  folder '{name}': {note}")


@ingest.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the cropped JPEGs (same names, .jpg).")
@click.option("--box", default=None, metavar="L,T,R,B",
              help="Crop box in screenshot pixels [default: the original's 591,0,1261,670 for 1512x810].")
@click.option("--size", default=DEFAULT_SIZE, show_default=True, type=int, help="Output width and height in pixels.")
def crop(inputs: tuple[Path, ...], out: Path, box: str | None, size: int) -> None:
    """Crop and resize raw viewer screenshots into model inputs (RGB JPEG).

    With the default box every input must be a 1512x810 screenshot; nothing is written unless all
    inputs can be cropped. Symlinks, FIFOs, folders, oversized files and decompression bombs are
    refused; an input is never overwritten, nor one crop by another of the same name.

    Example: geoloc ingest crop ../shared/data/stockholm/raw_examples/*.png --out crops/
    """
    from ..imagery.crop import DEFAULT_BOX, ingest_crop, parse_box

    written = ingest_crop(list(inputs), out, parse_box(box) if box else DEFAULT_BOX, size)
    click.echo(f"{len(written)} image(s) cropped to {size}x{size} into {out}")


def _ids(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"--locations: '{text}' is not a comma-separated list of location ids") from None


@ingest.command()
@click.option("--backend", required=True, type=click.Choice(BACKENDS),
              help="static-api: Street View Static API (key in GEOLOC_GOOGLE_API_KEY); browser: headless Chromium on a viewer page.")
@click.option("--split", type=click.Choice(SPLITS), help="Queue the locations of this split.")
@click.option("--locations", "location_ids", metavar="ID,ID,...", help="Queue these location ids.")
@click.option("--workers", default=C.DEFAULT_WORKERS, show_default=True, type=int, help="Worker threads (each with its own connection).")
@click.option("--rate", default=C.DEFAULT_RATE, show_default=True, type=float,
              help="Requests per second of all workers together; follow your imagery provider's terms.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the images [default: $GEOLOC_DATA_DIR/captures].")
@click.option("--version", "version", default=C.DEFAULT_VERSION, show_default=True, help="Version label of the captured images.")
@click.option("--max-attempts", default=C.DEFAULT_MAX_ATTEMPTS, show_default=True, type=int,
              help="Attempts per location before it is marked failed (an attempt whose worker was killed counts).")
@click.option("--backoff", default=C.DEFAULT_BACKOFF_S, show_default=True, type=float, help="Seconds before the first retry (doubles each time).")
@click.option("--retry-failed", is_flag=True, help="Give locations marked failed a fresh set of attempts.")
@click.option("--panos", type=click.Path(path_type=Path, dir_okay=False),
              help="static-api: CSV location_id,pano_id,YYYY-MM of historical panoramas.")
@click.option("--start-heading", default=StaticApiSettings.start_heading, show_default=True, type=float, help="static-api: heading of view 0 in degrees.")
@click.option("--viewer-url", help="browser: page URL template with {base} {lat} {lng} {pano} {id} [env GEOLOC_VIEWER_URL].")
@click.option("--date-selector", help="browser: CSS selector of the date buttons [env GEOLOC_VIEWER_DATE_SELECTOR].")
@click.option("--canvas-selector", help="browser: CSS selector of the panorama canvas [env GEOLOC_VIEWER_CANVAS_SELECTOR].")
@click.option("--rotate-selector", help="browser: CSS selector of the rotate control [env GEOLOC_VIEWER_ROTATE_SELECTOR].")
@click.option("--settle", default=BrowserSettings.settle_s, show_default=True, type=float, help="browser: seconds to wait after each click.")
def capture(backend: str, split: str | None, location_ids: str | None, workers: int, rate: float, out: Path | None,
            version: str, max_attempts: int, backoff: float, retry_failed: bool, panos: Path | None,
            start_heading: float, viewer_url: str | None, date_selector: str | None, canvas_selector: str | None,
            rotate_selector: str | None, settle: float) -> None:
    """Capture images of locations through a queue of jobs (resumable, several workers).

    Every location gets one job per backend; a location is never captured twice, a killed run
    resumes where it stopped and never leaves a location half stored. Runs on several machines
    can share one queue. Each attempt is counted before it starts, so a location whose capture
    kills the worker is marked failed after --max-attempts. Without --split or --locations the
    existing queue is resumed. Respect your imagery provider's terms and limits.

    Example: geoloc ingest capture --backend static-api --split test --workers 2 --rate 5
    """
    from ..errors import RemoteError
    from ..imagery.capture import ingest_capture

    if backend == "static-api":
        from ..imagery.backends.static_api import StaticApiSettings, read_panos_csv

        settings = StaticApiSettings(start_heading=start_heading, historical=read_panos_csv(panos) if panos else {})
    else:
        from ..imagery.backends.browser import BrowserSettings

        settings = BrowserSettings(settle_s=settle)
        for name, value in (("url_template", viewer_url), ("date_selector", date_selector),
                            ("canvas_selector", canvas_selector), ("rotate_selector", rotate_selector)):
            if value:
                setattr(settings, name, value)
    res = ingest_capture(backend, split=split, location_ids=_ids(location_ids), workers=workers, rate=rate,
                         out=out, settings=settings, max_attempts=max_attempts, backoff_s=backoff,
                         version=version, retry_failed=retry_failed, progress=True)
    for location_id, reason in res.errors:
        click.echo(f"location {location_id}: {reason}", err=True)
    queue_state = ", ".join(f"{n} {s}" for s, n in sorted(res.queue.items())) or "empty"
    click.echo(f"{backend}: {res.enqueued} of {res.selected} selected location(s) queued; captured {res.done} "
               f"location(s), {res.images} images into {res.out} ({res.seconds:.1f} s); "
               f"{res.retries} attempt(s) to retry, {res.failed} failed; queue: {queue_state}")
    if res.failed:
        raise RemoteError(f"{res.failed} location(s) failed after {max_attempts} attempts",
                          hint="see last_error in v_capture_jobs; rerun with --retry-failed")
