"""Voice figures through the real bot: `/tts say` → the first Opus packet, the bot's CPU per second of
speech, and how evenly the packets are paced (the gap between two of them).

The voice path is the one the tests use (tests/e2e/voice_loopback.py): the real discord.py VoiceClient,
its player thread, FFmpeg decoding the provider's MP3 and the Opus encoder, with only the voice
server's edges (websocket, UDP) loopback. The speech is real, made here with espeak-ng.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
import time
from pathlib import Path

from bench.results import Figure, percentile
from bench.world import Bench, IdleCpu, bench_world
from tests.e2e.voice_loopback import FRAMES_PER_SECOND, mp3_seconds, speech_mp3
from tests.emulators.gateway import GatewayEmulator

SPEECH = (
    "Concord reads this sentence aloud in the voice channel, so that the benchmark can time how soon "
    "the first sound is heard and how much work each second of speech costs the bot."
)
SETTLE = 0.5  # after the last packet: FFmpeg exits and is waited for, the player says it is done


async def packets(bench: Bench) -> list[float]:
    answer = await bench.bot.ask("voice")
    return [float(t) for t in answer["packets"]]


async def speak(bench: Bench, expected: int) -> tuple[float, list[float]]:
    """One `/tts say`: when it was sent, and when each of its Opus packets was played."""
    await bench.bot.ask("reset")
    started = time.monotonic()
    await bench.emu.run_command(bench.world.member, "tts say", {"text": SPEECH}, channel=bench.world.general)
    deadline = time.monotonic() + 60
    played: list[float] = []
    while len(played) < expected - 3:  # the test's tolerance: FFmpeg's last frame may be short
        if time.monotonic() > deadline:
            raise RuntimeError(f"speech did not play: {len(played)} of {expected} packets")
        await asyncio.sleep(0.05)
        played = await packets(bench)
    await asyncio.sleep(SETTLE)
    return started, await packets(bench)


def gaps_ms(played: list[float]) -> list[float]:
    """The time between each two packets in a row (20 ms when the player keeps time)."""
    return [(later - earlier) * 1000 for earlier, later in itertools.pairwise(played)]


async def run(quick: bool) -> list[Figure]:
    first = Figure(
        "tts_first_audio_ms", "ms", "/tts say sent → first Opus packet, bot already in the channel", ""
    )
    joining = Figure(
        "tts_join_first_audio_ms", "ms", "/tts say sent → first Opus packet, joining the channel first", ""
    )
    cpu = Figure("voice_cpu_ms_per_s", "ms", "bot CPU per second of speech played (FFmpeg apart)", "")
    gaps = Figure("voice_gap_p99_ms", "ms", "p99 time between two Opus packets in a row (20 is on time)", "")
    figures = [first, joining, cpu, gaps]
    if shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None:
        for figure in figures:
            figure.na = "needs espeak-ng and ffmpeg (make testdeps)"
        return figures
    audio = speech_mp3(SPEECH)
    seconds = mp3_seconds(audio)
    expected = round(seconds * FRAMES_PER_SECOND)
    cpu.extra["speech_s"] = round(seconds, 2)
    with tempfile.TemporaryDirectory() as folder:
        speech = await GatewayEmulator("airforce", mp3=audio).start()
        try:
            async with bench_world(
                Path(folder),
                channels=1,
                users=1,
                extra_env={"BENCH_VOICE": "loopback", "TTS_IDLE_TIMEOUT": "600"},
                extra_gateways=[speech],
            ) as bench:
                bench.world.guild.set_voice_state(bench.world.member, bench.world.voice)
                await asyncio.sleep(0.5)  # the voice state reaches the bot
                idle_cpu = IdleCpu()
                await idle_cpu.measure(bench.bot, asyncio.sleep(1.0 if quick else 3.0))
                ffmpeg: list[float] = []
                for run_index in range(2 if quick else 8):
                    before = await bench.bot.stats()
                    started, played = await speak(bench, expected)
                    after = await bench.bot.stats()
                    (joining if run_index == 0 else first).samples.append((played[0] - started) * 1000)
                    if run_index == 0:
                        continue  # joining costs more than speaking; the rest are speech alone
                    elapsed = time.monotonic() - started
                    used = after["cpu_s"] - before["cpu_s"] - idle_cpu.per_s * elapsed
                    cpu.samples.append(used * 1000 / seconds)
                    ffmpeg.append((after["children_cpu_s"] - before["children_cpu_s"]) * 1000 / seconds)
                    between = gaps_ms(played)
                    gaps.samples.append(percentile(between, 0.99))
                    gaps.extra["max_ms"] = round(max([*between, gaps.extra.get("max_ms", 0.0)]), 2)
                    gaps.extra["packets"] = len(played)
                cpu.extra["idle_cpu_ms_per_s"] = round(idle_cpu.per_s * 1000, 2)
                if ffmpeg:
                    cpu.extra["ffmpeg_cpu_ms_per_s"] = round(sorted(ffmpeg)[len(ffmpeg) // 2], 2)
        finally:
            await speech.close()
    return figures
