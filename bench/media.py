"""Media figure: extra peak memory of the bot process to deliver one 9 MiB image through /imagine."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from bench.results import Figure
from bench.world import bench_world, proc_kb, wait_until
from tests.emulators.gateway import GatewayEmulator

IMAGE_BYTES = 9 * 1024 * 1024


def noise_png(target: int = IMAGE_BYTES) -> bytes:
    """A PNG of random pixels (it barely compresses) at least `target` bytes long."""
    from PIL import Image

    side = int((target / 3) ** 0.5) + 8
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def delivered(itx: object) -> bool:
    message = getattr(itx, "original", None) or {}
    return bool(message.get("attachments")) or (message.get("content") or "").startswith("⚠️")


async def run(quick: bool) -> list[Figure]:
    figure = Figure("media_peak_mb", "MB", "extra peak RSS to deliver one 9 MiB image", "≤ 27 (3 × 9 MiB)")
    image = noise_png()
    figure.extra["image_mb"] = round(len(image) / 1_048_576, 2)
    with tempfile.TemporaryDirectory() as folder:
        images = await GatewayEmulator("airforce").start()
        images.png = image
        try:
            async with bench_world(Path(folder), channels=1, users=1, extra_gateways=[images]) as bench:
                pid = bench.bot.process.pid
                for run_index in range(2 if quick else 4):
                    await bench.bot.ask("clear_peak")
                    before_kb = proc_kb(pid, "VmRSS")
                    itx = await bench.emu.run_command(
                        bench.world.member,
                        "imagine",
                        {"prompt": f"noise {run_index}"},
                        channel=bench.world.general,
                    )
                    await wait_until(lambda itx=itx: delivered(itx), 60, "the /imagine result")
                    message = itx.original or {}
                    if not message.get("attachments"):
                        figure.na = f"/imagine did not deliver: {message.get('content')!r}"
                        return [figure]
                    figure.samples.append((proc_kb(pid, "VmHWM") - before_kb) / 1024)
        finally:
            await images.close()
    return [figure]
