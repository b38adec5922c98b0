"""One speech queue per server: joins or moves to the right voice channel, plays MP3s in order, and
leaves when it has been idle for a while or is alone in its channel."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import discord

log = logging.getLogger(__name__)

# Ways a voice connection attempt fails; anything else is a bug and propagates.
CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    discord.ClientException,
    discord.ConnectionClosed,
    discord.opus.OpusNotLoaded,
    OSError,
    RuntimeError,  # discord.py raises it when PyNaCl or davey is missing
)


class Outcome(StrEnum):
    """How a queued request ended; only PLAYED means a listener heard something."""

    PLAYED = "played"
    SKIPPED = "skipped"  # skipped before any audio went out
    CLEARED = "cleared"  # /tts stop, /tts leave, alone, or shutting down before it played
    UNPLAYABLE = "unplayable"  # the audio decoded to nothing
    NO_CONNECTION = "no_connection"  # the voice connection failed, and failed again on the retry


Settle = Callable[["SpeechItem", Outcome], Awaitable[None]]


@dataclass(eq=False)
class SpeechItem:
    """One request waiting to be spoken: MP3 bytes, what they say, who asked, and where."""

    audio: bytes
    text: str
    requester_id: int
    channel_id: int
    settle: Settle | None = None
    speaker_id: int | None = None  # reading mode: whose message this is
    frames: int = 0


class CountingPCMAudio(discord.FFmpegPCMAudio):
    """MP3 bytes decoded by FFmpeg to 20 ms PCM frames, counting how many were read."""

    def __init__(self, item: SpeechItem) -> None:
        # FFmpeg's own warnings about a provider's MP3 framing are noise; errors still show.
        super().__init__(io.BytesIO(item.audio), pipe=True, options="-loglevel error")
        self.item = item

    def read(self) -> bytes:
        data = super().read()
        if data:
            self.item.frames += 1
        return data


@dataclass
class VoiceOptions:
    idle_timeout: float = 300.0
    connect_timeout: float = 15.0
    queue_limit: int = 20


class QueueFull(Exception):
    pass


class GuildPlayer:
    """The queue and playback loop of one server; the loop runs while there is something to do."""

    def __init__(self, manager: VoiceManager, guild_id: int) -> None:
        self.manager = manager
        self.guild_id = guild_id
        self.queue: deque[SpeechItem] = deque()
        self.current: SpeechItem | None = None
        # Reading mode: whose message was queued last, so the speaker is announced only on a change.
        self.last_speaker_id: int | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._skipping = False
        # While connecting, a failed attempt's own disconnect is not someone removing the bot from voice.
        self.connecting = False

    # -- what commands see -------------------------------------------------------------------------

    @property
    def guild(self) -> discord.Guild | None:
        return self.manager.client.get_guild(self.guild_id)

    @property
    def voice_client(self) -> discord.VoiceClient | None:
        guild = self.guild
        client = guild.voice_client if guild is not None else None
        return client if isinstance(client, discord.VoiceClient) else None

    @property
    def connected_channel(self) -> discord.VoiceChannel | discord.StageChannel | None:
        client = self.voice_client
        return client.channel if client is not None and client.is_connected() else None

    @property
    def busy(self) -> bool:
        return self.current is not None or bool(self.queue)

    def add(self, item: SpeechItem) -> int:
        """Queue `item`; returns how many requests are ahead of it (0: it plays next)."""
        if len(self.queue) >= self.manager.options.queue_limit:
            raise QueueFull()
        ahead = len(self.queue) + (1 if self.current is not None else 0)
        self.queue.append(item)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"tts-player-{self.guild_id}")
        return ahead

    def skip(self) -> SpeechItem | None:
        """Stop the request being spoken (the next one starts); returns it, or None when silent."""
        item = self.current
        client = self.voice_client
        if item is None or client is None:
            return None
        self._skipping = True
        client.stop()
        return item

    async def stop(self) -> int:
        """Drop every waiting request and stop the current one; returns how many were dropped."""
        dropped = list(self.queue)
        self.queue.clear()
        for item in dropped:
            await self._settle(item, Outcome.CLEARED)
        if self.skip() is not None:
            return len(dropped) + 1
        return len(dropped)

    async def leave(self) -> bool:
        """Stop everything and disconnect; True when the bot was in a voice channel."""
        await self.stop()
        was_connected = await self._disconnect()
        if self._task is not None and not self._task.done() and self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        return was_connected

    # -- the loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                if not self.queue:
                    if self.connected_channel is None:
                        return
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.manager.options.idle_timeout)
                    except TimeoutError:
                        log.info("Leaving voice in guild %s: idle", self.guild_id)
                        await self._disconnect()
                        return
                    continue
                item = self.queue.popleft()
                self.current = item
                self._skipping = False
                try:
                    outcome = await self._play(item)
                finally:
                    self.current = None
                await self._settle(item, outcome)
        except asyncio.CancelledError:
            for item in [*([self.current] if self.current else []), *self.queue]:
                await asyncio.shield(self._settle(item, Outcome.CLEARED))
            self.queue.clear()
            raise
        except Exception:
            log.exception("The speech queue of guild %s failed", self.guild_id)
            raise

    async def _play(self, item: SpeechItem) -> Outcome:
        client = await self._voice_for(item.channel_id)
        if client is None:
            return Outcome.NO_CONNECTION
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[BaseException | None] = loop.create_future()

        def finish(error: BaseException | None) -> None:
            if not finished.done():
                finished.set_result(error)

        def after(error: BaseException | None) -> None:  # runs on the player thread
            loop.call_soon_threadsafe(finish, error)

        try:
            client.play(CountingPCMAudio(item), after=after)
        except CONNECT_ERRORS as exc:
            log.warning("Could not start playback in guild %s: %s", self.guild_id, exc)
            return Outcome.NO_CONNECTION
        error = await finished
        if error is not None:
            log.warning("Playback in guild %s ended with %s", self.guild_id, error)
        if item.frames == 0:
            return Outcome.SKIPPED if self._skipping else Outcome.UNPLAYABLE
        return Outcome.PLAYED

    async def _voice_for(self, channel_id: int) -> discord.VoiceClient | None:
        """Connected to `channel_id`: joins, or moves there; one retry, then None."""
        guild = self.guild
        channel = guild.get_channel(channel_id) if guild is not None else None
        if guild is None or not isinstance(channel, discord.VoiceChannel | discord.StageChannel):
            return None
        options = self.manager.options
        self.connecting = True
        try:
            return await self._connect_to(guild, channel, options)
        finally:
            self.connecting = False

    async def _connect_to(
        self,
        guild: discord.Guild,
        channel: discord.VoiceChannel | discord.StageChannel,
        options: VoiceOptions,
    ) -> discord.VoiceClient | None:
        channel_id = channel.id
        for attempt in (1, 2):
            client = self.voice_client
            try:
                if client is None or not client.is_connected():
                    if guild.voice_client is not None:
                        await guild.voice_client.disconnect(force=True)
                    return await channel.connect(
                        cls=self.manager.client_cls, timeout=options.connect_timeout, self_deaf=True
                    )
                if client.channel.id != channel_id:
                    await client.move_to(channel, timeout=options.connect_timeout)
                    self.last_speaker_id = None
                return client
            except CONNECT_ERRORS as exc:
                log.warning(
                    "Voice connection to %s failed (attempt %d): %s", channel_id, attempt, exc or type(exc)
                )
        return None

    async def _disconnect(self) -> bool:
        self.last_speaker_id = None
        guild = self.guild
        client = guild.voice_client if guild is not None else None
        if client is None:
            return False
        try:
            await client.disconnect(force=True)
        except Exception:
            log.warning("Voice disconnect in guild %s failed", self.guild_id, exc_info=True)
        return True

    async def _settle(self, item: SpeechItem, outcome: Outcome) -> None:
        if item.settle is None:
            return
        settle, item.settle = item.settle, None  # exactly once
        try:
            await settle(item, outcome)
        except Exception:
            log.exception("Settling a speech request in guild %s failed", self.guild_id)


@dataclass
class VoiceManager:
    """Every server's player. Built once by the bot; the /tts cog and reading mode share it."""

    client: discord.Client
    options: VoiceOptions = field(default_factory=VoiceOptions)
    # The VoiceProtocol class used to connect; tests swap in one whose network edges are loopback.
    client_cls: Any = discord.VoiceClient
    players: dict[int, GuildPlayer] = field(default_factory=dict)

    def player(self, guild_id: int) -> GuildPlayer:
        player = self.players.get(guild_id)
        if player is None:
            player = self.players[guild_id] = GuildPlayer(self, guild_id)
        return player

    def busy_elsewhere(
        self, guild_id: int, channel_id: int
    ) -> discord.VoiceChannel | discord.StageChannel | None:
        """The channel the bot is speaking in, when that is not `channel_id` (it is never pulled away)."""
        player = self.players.get(guild_id)
        if player is None or not player.busy:
            return None
        target = (player.current or player.queue[0]).channel_id
        if target == channel_id:
            return None
        guild = self.client.get_guild(guild_id)
        channel = guild.get_channel(target) if guild is not None else None
        return channel if isinstance(channel, discord.VoiceChannel | discord.StageChannel) else None

    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        """Leave when nobody but bots is left with us; forget the queue when we were disconnected."""
        player = self.players.get(member.guild.id)
        if player is None:
            return
        me = self.client.user
        if me is not None and member.id == me.id:
            if after.channel is None and before.channel is not None and not player.connecting:
                # Disconnected by someone else: don't rejoin for what was waiting.
                await player.stop()
            return
        channel = player.connected_channel
        if channel is None or before.channel is None or before.channel.id != channel.id:
            return
        members = getattr(channel, "members", [])
        if not any(not m.bot for m in members):
            log.info("Leaving voice in guild %s: alone", member.guild.id)
            await player.leave()

    async def close(self) -> None:
        for player in list(self.players.values()):
            with contextlib.suppress(Exception):
                await player.leave()
        self.players.clear()
