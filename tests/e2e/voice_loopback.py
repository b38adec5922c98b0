"""Voice for tests without a Discord voice server: speech MP3s made offline, and a VoiceClient whose
network edges are loopback.

`LoopbackVoiceClient` is the real discord.py `VoiceClient` (real `play`, the real `AudioPlayer` thread,
the real Opus encoder fed by the real `FFmpegPCMAudio`) with only what touches a voice server replaced:
- connect: the real gateway op 4 to the (emulated) Discord, then waiting for its VOICE_STATE_UPDATE and
  VOICE_SERVER_UPDATE — but no voice websocket, UDP discovery or DAVE handshake afterwards;
- disconnect / move: op 4 again;
- speaking: recorded instead of sent;
- packet send: the Opus packet is recorded instead of encrypted and sent over UDP.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, ClassVar

import discord
from discord.voice_client import VoiceClient

FRAMES_PER_SECOND = 50  # Opus frames are 20 ms


@functools.cache
def speech_mp3(text: str = "Concord is speaking in the voice channel.", voice: str = "en") -> bytes:
    """Real speech as MP3, made here and now with espeak-ng and FFmpeg (never a committed binary)."""
    espeak = shutil.which("espeak-ng")
    ffmpeg = shutil.which("ffmpeg")
    if espeak is None or ffmpeg is None:
        raise RuntimeError("the voice tests need espeak-ng and ffmpeg (make testdeps installs them)")
    with tempfile.TemporaryDirectory() as folder:
        wav, mp3 = Path(folder, "speech.wav"), Path(folder, "speech.mp3")
        subprocess.run([espeak, "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
        subprocess.run(
            [
                ffmpeg,
                "-nostdin",
                "-loglevel",
                "error",
                "-i",
                str(wav),
                "-codec:a",
                "libmp3lame",
                "-b:a",
                "64k",
                str(mp3),
            ],
            check=True,
            capture_output=True,
        )
        return mp3.read_bytes()


def mp3_seconds(data: bytes) -> float:
    """How long the MP3 plays: FFmpeg decodes it to 48 kHz stereo 16-bit PCM and the bytes are counted
    (a header estimate is not exact for MP3s without a Xing header)."""
    decoded = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            "pipe:0",
            "-f",
            "s16le",
            "-ar",
            "48000",
            "-ac",
            "2",
            "pipe:1",
        ],
        input=data,
        check=True,
        capture_output=True,
    ).stdout
    return len(decoded) / (48000 * 2 * 2)


class _Speaking:
    """Stands in for the voice websocket's `speak`; remembers each speaking state."""

    def __init__(self) -> None:
        self.states: list[discord.SpeakingState] = []

    async def speak(self, state: discord.SpeakingState = discord.SpeakingState.voice) -> None:
        self.states.append(state)


class LoopbackVoiceClient(VoiceClient):
    """See the module docstring. Class-level knobs and records, since discord.py builds the instances."""

    # The next N connections fail at the voice-server edge (after Discord's gateway answered).
    fail_connects: ClassVar[int] = 0
    fail_after: ClassVar[float] = 0.0  # seconds a failing connection hangs before it fails
    instances: ClassVar[list[LoopbackVoiceClient]] = []

    def __init__(self, client: discord.Client, channel: Any) -> None:
        super().__init__(client, channel)
        self.plays: list[list[bytes]] = []  # Opus packets of audio, one list per play()
        self.silence_packets = 0
        self.speaking = _Speaking()
        self.connects = 0
        self._online = threading.Event()
        self._voice_state = asyncio.Event()
        self._voice_server = asyncio.Event()
        type(self).instances.append(self)

    @classmethod
    def reset(cls) -> None:
        cls.fail_connects = 0
        cls.fail_after = 0.0
        cls.instances = []

    # -- the gateway half of the handshake (real) --------------------------------------------------

    async def on_voice_state_update(self, data: Any) -> None:
        if data.get("channel_id") is None:
            self._online.clear()
            return
        channel = self.guild.get_channel(int(data["channel_id"]))
        if channel is not None:
            self.channel = channel  # type: ignore[assignment]
        self._voice_state.set()

    async def on_voice_server_update(self, data: Any) -> None:
        self._voice_server.set()

    async def connect(
        self,
        *,
        reconnect: bool,
        timeout: float,  # noqa: ASYNC109 (discord.py's signature)
        self_deaf: bool = False,
        self_mute: bool = False,
    ) -> None:
        self.connects += 1
        self._voice_state.clear()
        self._voice_server.clear()
        await self.guild.change_voice_state(channel=self.channel, self_mute=self_mute, self_deaf=self_deaf)
        await asyncio.wait_for(
            asyncio.gather(self._voice_state.wait(), self._voice_server.wait()), timeout=timeout
        )
        if type(self).fail_connects > 0:
            type(self).fail_connects -= 1
            await asyncio.sleep(type(self).fail_after)
            raise TimeoutError("the voice server did not answer (scripted)")
        self._online.set()

    async def move_to(self, channel: Any, *, timeout: float | None = 30.0) -> None:  # noqa: ASYNC109
        self._voice_state.clear()
        await self.guild.change_voice_state(channel=channel)
        await asyncio.wait_for(self._voice_state.wait(), timeout=timeout)

    async def disconnect(self, *, force: bool = False) -> None:
        self.stop()
        self._online.clear()
        await self.guild.change_voice_state(channel=None)
        self.cleanup()

    def is_connected(self) -> bool:
        return self._online.is_set()

    def wait_until_connected(self, timeout: float | None = 30.0) -> bool:
        return self._online.wait(timeout)

    # -- the voice-server half (loopback) ----------------------------------------------------------

    @property
    def ws(self) -> Any:
        return self.speaking

    def play(self, source: discord.AudioSource, **kwargs: Any) -> None:
        self.plays.append([])
        super().play(source, **kwargs)

    def send_audio_packet(self, data: bytes, *, encode: bool = True) -> None:
        if encode:
            self.plays[-1].append(self.encoder.encode(data, self.encoder.SAMPLES_PER_FRAME))
        else:
            self.silence_packets += 1  # the player's trailing silence frames, already Opus

    @property
    def audio_packets(self) -> int:
        return sum(len(play) for play in self.plays)
