"""Copy the runs' plot images into the site, downscaled and under a total size cap.

Records are untrusted input: an artifact path that leaves the record's results directory is
refused (:func:`benchmarks.leaderboard.load.confined_path`), only raster images that Pillow can
decode are copied, and SVG is never copied (an SVG can carry scripts that would run in the
site's origin). Refusals are listed in ``skipped`` and in ``results.json``.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.leaderboard.load import ArtifactResolver, UnsafeArtifactPath
from benchmarks.tracking.records import safe_name

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
"""Raster formats copied into the site (checked by decoding them, not by their suffix)."""

REFUSED_SUFFIXES = (".svg", ".svgz", ".html", ".htm", ".xhtml")
"""Formats that can carry scripts: never copied from a record."""

PLOT_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("UMAP", ("umap",)),
    ("confusion matrix", ("confusion",)),
    ("ROC curves", ("roc",)),
    ("precision-recall", ("precision_recall", "pr_curve")),
    ("perturbation: predicted vs true change", ("scatter", "perturb", "pred_vs_true", "delta")),
    ("gene programs", ("program",)),
)
"""Plot kind → file-name fragments that identify it (first match wins)."""


def plot_kind(filename: str) -> str:
    """The kind of plot a file name denotes (``"other plot"`` when unknown)."""
    low = filename.lower()
    for kind, needles in PLOT_KINDS:
        if any(n in low for n in needles):
            return kind
    return "other plot"


@dataclass
class SiteImage:
    """An image copied into the site."""

    kind: str
    relpath: str
    """Path relative to the site root (forward slashes)."""
    record_id: str
    source_name: str


@dataclass
class AssetCopier:
    """Copies images below ``site/assets/<record id>/`` and keeps count of the bytes.

    Parameters
    ----------
    site
        The site root.
    max_px
        Raster images wider or taller than this are downscaled (aspect kept).
    max_file_kb
        Raster images larger than this are re-encoded (downscaled PNG) even when small in pixels.
    max_total_mb
        Images beyond this total are skipped (and listed in ``skipped``).

    """

    site: Path
    max_px: int = 1400
    max_file_kb: int = 600
    max_total_mb: float = 40.0
    total_bytes: int = 0
    skipped: list[str] = field(default_factory=list)

    def copy(self, record_id: str, artifacts: list[str], resolve: ArtifactResolver) -> list[SiteImage]:
        """Copy the image artifacts of one record; return what landed in the site."""
        out = []
        folder = Path("assets", *[safe_name(p) for p in record_id.split("/")])
        for rel in artifacts:
            name = Path(str(rel)).name
            suffix = Path(name).suffix.lower()
            if suffix in REFUSED_SUFFIXES:
                self._refuse(record_id, rel, "may carry scripts; not copied")
                continue
            if suffix not in IMAGE_SUFFIXES:
                continue
            try:
                src = resolve(rel)
            except UnsafeArtifactPath as exc:
                self._refuse(record_id, rel, str(exc))
                continue
            if src is None:
                self.skipped.append(f"{record_id}/{name} (missing)")
                continue
            dest_rel = folder / safe_name(name)
            dest = self.site / dest_rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                size = self._place(src, dest)
            except (OSError, ValueError) as exc:  # not a decodable raster image (PIL raises OSError)
                dest.unlink(missing_ok=True)
                self._refuse(record_id, rel, f"not a readable {suffix} image ({type(exc).__name__})")
                continue
            if self.total_bytes + size > self.max_total_mb * 1e6:
                dest.unlink()
                self.skipped.append(f"{record_id}/{name} (site size cap {self.max_total_mb} MB)")
                continue
            self.total_bytes += size
            out.append(SiteImage(plot_kind(name), dest_rel.as_posix(), record_id, name))
        return out

    def _refuse(self, record_id: str, rel: object, why: str) -> None:
        log.warning("record %s: artifact %r refused: %s", record_id, rel, why)
        self.skipped.append(f"{record_id}/{Path(str(rel)).name} (refused: {why})")

    def _place(self, src: Path, dest: Path) -> int:
        """Copy ``src`` to ``dest``, downscaling a big raster image; return the bytes written.

        Raises
        ------
        OSError
            If Pillow cannot decode ``src`` as the raster format its suffix names.

        """
        from PIL import Image

        with Image.open(src) as img:
            expected = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".webp": "WEBP"}
            if img.format != expected.get(src.suffix.lower()):
                raise OSError(f"{src.name} holds {img.format}, not {src.suffix}")
            img.verify()
        if src.suffix.lower() == ".gif":
            shutil.copyfile(src, dest)
            return dest.stat().st_size
        with Image.open(src) as img:
            big = max(img.size) > self.max_px or src.stat().st_size > self.max_file_kb * 1024
            if not big:
                shutil.copyfile(src, dest)
                return dest.stat().st_size
            scale = min(1.0, self.max_px / max(img.size))
            if src.stat().st_size > self.max_file_kb * 1024:
                scale = min(scale, 0.75)
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            alpha = "A" in img.getbands() and dest.suffix.lower() not in (".jpg", ".jpeg")
            small = img.convert("RGBA" if alpha else "RGB").resize(size, Image.LANCZOS)
            small.save(dest, optimize=True)
        log.info("downscaled %s to %s", src.name, size)
        return dest.stat().st_size
