"""Front-end packages from npm, served by the app itself from `node_modules` (no CDN).

Only the files listed in `VENDOR_FILES` are served, under `/vendor/<path inside node_modules>`,
so the relative URLs inside the packages' CSS (fonts, images) keep working. The directory is
`$IOT_CENTER_ASSETS`, default `<repo>/node_modules` (`npm ci` fills it). A missing file is
logged once at start-up, announced in the page layout, and answered 404: pages still render.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("iot_center.pages")

REPO = Path(__file__).resolve().parent.parent.parent

# Logical names used by the templates -> file inside node_modules.
VENDOR = {
    "bootstrap.css": "bootstrap/dist/css/bootstrap.min.css",
    "bootstrap.js": "bootstrap/dist/js/bootstrap.bundle.min.js",
    "icons.css": "bootstrap-icons/font/bootstrap-icons.min.css",
    "chart.js": "chart.js/dist/chart.umd.min.js",
    "chart-adapter.js": "chartjs-adapter-date-fns/dist/chartjs-adapter-date-fns.bundle.min.js",
    "leaflet.css": "leaflet/dist/leaflet.css",
    "leaflet.js": "leaflet/dist/leaflet.js",
    "topojson.js": "topojson-client/dist/topojson-client.min.js",
    "world.json": "world-atlas/countries-110m.json",
}

# Files the packages above load by relative URL.
_REFERENCED = (
    "bootstrap-icons/font/fonts/bootstrap-icons.woff2",
    "bootstrap-icons/font/fonts/bootstrap-icons.woff",
    "leaflet/dist/images/layers.png",
    "leaflet/dist/images/layers-2x.png",
    "leaflet/dist/images/marker-icon.png",
    "leaflet/dist/images/marker-icon-2x.png",
    "leaflet/dist/images/marker-shadow.png",
)

VENDOR_FILES = frozenset(VENDOR.values()) | frozenset(_REFERENCED)


def assets_dir() -> Path:
    return Path(os.environ.get("IOT_CENTER_ASSETS") or REPO / "node_modules")


def missing_assets(directory: Path) -> list[str]:
    return sorted(name for name in VENDOR_FILES if not (directory / name).is_file())


def check_assets(directory: Path) -> list[str]:
    """Log (once, at start-up) which front-end files are missing; return them."""
    missing = missing_assets(directory)
    if missing:
        log.warning(
            "front-end assets missing in %s (%d of %d files, e.g. %s): pages render without "
            "styles or charts. Run `npm ci` in the repository, or set IOT_CENTER_ASSETS to a "
            "node_modules directory.",
            directory,
            len(missing),
            len(VENDOR_FILES),
            missing[0],
        )
    return missing
