"""Media figure: extra peak memory to deliver one 9 MiB image. Needs the images cog (/imagine)."""

from __future__ import annotations

from bench.results import Figure

IMAGES_EXTENSIONS = ("cogs.images", "cogs.imagine", "cogs.image")


def images_cog() -> str | None:
    """The loaded extension that provides /imagine, if this branch has one."""
    from bot.app import EXTENSIONS

    return next((name for name in EXTENSIONS if name in IMAGES_EXTENSIONS), None)


def run(quick: bool) -> list[Figure]:
    figure = Figure("media_peak_mb", "MB", "extra peak RSS to deliver one 9 MiB image", "≤ 27 (3 × 9 MiB)")
    cog = images_cog()
    if cog is None:
        figure.na = "/imagine not on this branch"
        return [figure]
    figure.na = f"{cog} is loaded but this harness has no /imagine scenario yet"
    return [figure]
