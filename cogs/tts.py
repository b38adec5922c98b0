"""/tts: speech in the caller's voice channel, one queue per server, reading mode, and the MP3 fallback."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.discordkit.checks import require_manage_guild, reserve_quota, reserve_quota_for_message, server_only
from bot.discordkit.embeds import result_embed
from bot.discordkit.responses import reply
from bot.discordkit.voice_queue import GuildPlayer, Outcome, QueueFull, SpeechItem, VoiceManager
from bot.errors import ConcordError, FeatureUnavailable, InvalidInput
from bot.providers.profiles import VOICES
from bot.providers.types import SpeechRequest
from bot.services.model_catalog import fuzzy_matches
from bot.services.quotas import Feature, QuotaExceeded, Reservation
from bot.services.speech_text import Names, clip, speakable
from bot.services.tts_settings import ReadingMode, TtsSettingsService, message_content_note

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)

TTS_COLOUR = 0x5865F2
DEFAULT_VOICE = VOICES[0]
# An MP3 shorter than this holds a few frames at most: nothing a person would hear as speech.
MIN_AUDIO_BYTES = 1024
PREVIEW_CHARS = 120
ATTACHMENT_NAME = "speech.mp3"


class SpeechFailed(ConcordError):
    """The voice service answered with something that is not speech."""


def names_in(guild: discord.Guild, mentioned: Iterable[discord.abc.User] = ()) -> Names:
    """Name lookups for one server: members by display name, channels and roles by name."""
    known = {user.id: user for user in mentioned}

    def user(user_id: int) -> str | None:
        member = guild.get_member(user_id) or known.get(user_id)
        return member.display_name if member is not None else None

    def channel(channel_id: int) -> str | None:
        found = guild.get_channel_or_thread(channel_id)
        return found.name if found is not None else None

    def role(role_id: int) -> str | None:
        found = guild.get_role(role_id)
        return found.name if found is not None else None

    return Names(user=user, channel=channel, role=role)


MENTION = re.compile(r"<@!?(\d{15,21})>")
# Members are cached only when they are in voice (no members intent): look up a few others over REST.
MAX_MEMBER_LOOKUPS = 5


async def mentioned_members(guild: discord.Guild, text: str) -> list[discord.Member]:
    """Members mentioned in `text` that the cache doesn't hold, fetched (a few at most)."""
    found = []
    for user_id in list(dict.fromkeys(int(m) for m in MENTION.findall(text)))[:MAX_MEMBER_LOOKUPS]:
        if guild.get_member(user_id) is not None:
            continue
        try:
            found.append(await guild.fetch_member(user_id))
        except discord.HTTPException:
            continue
    return found


def preview(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def speech_file(audio: bytes) -> discord.File:
    return discord.File(io.BytesIO(audio), filename=ATTACHMENT_NAME)


def voice_problem(guild: discord.Guild, member: discord.Member | None) -> tuple[Any, str | None]:
    """The caller's voice channel and, when the bot can't speak there, why (the fallback's one line)."""
    state = member.voice if member is not None else None
    channel = state.channel if state is not None else None
    if channel is None:
        return None, "You're not in a voice channel, so here is the audio instead."
    permissions = channel.permissions_for(guild.me)
    missing = ("Connect" if not (permissions.view_channel and permissions.connect) else None) or (
        "Speak" if not permissions.speak else None
    )
    if missing is not None:
        return channel, f"I lack the {missing} permission in {channel.mention}, so here is the audio instead."
    return channel, None


class Tts(commands.GroupCog, group_name="tts", group_description="Speak text in your voice channel."):
    """Text to speech in voice channels."""

    reading = app_commands.Group(name="reading", description="Read a text channel aloud while in voice.")

    def __init__(self, bot: Concord) -> None:
        self.bot = bot
        self.voice: VoiceManager = bot.voice
        self.store: TtsSettingsService = bot.tts_settings
        self._reading_locks: dict[int, asyncio.Lock] = {}
        super().__init__()

    # -- shared steps ------------------------------------------------------------------------------

    async def choose_voice(self, user_id: int, asked: str | None, guild_voice: str | None) -> str:
        if asked is not None:
            voice = asked.strip().lower()
            if voice not in VOICES:
                raise InvalidInput(f"Voices are {', '.join(VOICES)}.")
            return voice
        for stored in (await self.store.user_voice(user_id), guild_voice):
            if stored in VOICES:
                return stored
        return DEFAULT_VOICE

    async def fetch_speech(self, text: str, voice: str) -> bytes:
        """MP3 bytes for `text`; raises a sentence for the user when the answer is not speech."""
        audio = await self.bot.providers.speech(SpeechRequest(text=text, voice=voice))  # type: ignore[arg-type]
        if len(audio.data) < MIN_AUDIO_BYTES:
            raise SpeechFailed("The voice service sent back almost no audio, so there was nothing to play.")
        return audio.data

    async def send_fallback(
        self, interaction: discord.Interaction[Concord], audio: bytes, reason: str
    ) -> None:
        if not interaction.is_expired():
            await interaction.followup.send(reason, file=speech_file(audio))
            return
        channel = interaction.channel
        if isinstance(channel, discord.abc.Messageable) and interaction.channel_id is not None:
            await self.bot.write_budget.write(
                interaction.channel_id,
                lambda: channel.send(f"{interaction.user.mention} {reason}", file=speech_file(audio)),
            )

    async def tell(self, interaction: discord.Interaction[Concord], text: str) -> None:
        if not interaction.is_expired():
            await interaction.followup.send(text, ephemeral=True)

    def settle_for(self, interaction: discord.Interaction[Concord], reservation: Reservation) -> Any:
        async def settle(item: SpeechItem, outcome: Outcome) -> None:
            if outcome is Outcome.PLAYED:
                return
            if outcome is Outcome.NO_CONNECTION:
                # The user still gets what they paid for, as a file.
                reason = "I couldn't connect to the voice channel, so here is the audio instead."
                await self.send_fallback(interaction, item.audio, reason)
                return
            await reservation.refund()
            if outcome is Outcome.UNPLAYABLE:
                await self.tell(interaction, "The voice service sent audio that couldn't be played.")

        return settle

    # -- /tts say ----------------------------------------------------------------------------------

    @app_commands.command(name="say", description="Speak text in your voice channel.")
    @app_commands.describe(text="What to say.", voice="Voice (default: yours from /tts voice).")
    @server_only()
    async def say(
        self,
        interaction: discord.Interaction[Concord],
        text: app_commands.Range[str, 1, 1000],
        voice: str | None = None,
    ) -> None:
        guild = interaction.guild
        if guild is None:
            raise app_commands.NoPrivateMessage()
        config = await self.bot.guild_config.get(guild.id)
        if not config.is_enabled("tts"):
            raise FeatureUnavailable("Text to speech is switched off in this server.")
        cap = self.bot.settings.tts_max_chars
        if len(text) > cap:
            raise InvalidInput(f"That's {len(text)} characters; /tts say speaks at most {cap}.")
        spoken = speakable(text, names_in(guild, await mentioned_members(guild, text)))
        if not spoken:
            raise InvalidInput("There's nothing to say in that once formatting is taken out.")
        chosen = await self.choose_voice(interaction.user.id, voice, config.tts_voice)
        member = guild.get_member(interaction.user.id)
        channel, reason = voice_problem(guild, member)
        if reason is None and channel is not None:
            busy = self.voice.busy_elsewhere(guild.id, channel.id)
            if busy is not None:
                reason = f"I'm speaking in {busy.mention} right now, so here is the audio instead."
        await interaction.response.defer(thinking=True)
        reservation = reserve_quota(self.bot.quotas, interaction, Feature.TTS)
        async with reservation:
            audio = await self.fetch_speech(spoken, chosen)
        if reason is not None or channel is None:
            await self.send_fallback(interaction, audio, reason or "Here is the audio.")
            return
        item = SpeechItem(
            audio, spoken, interaction.user.id, channel.id, settle=self.settle_for(interaction, reservation)
        )
        try:
            ahead = self.voice.player(guild.id).add(item)
        except QueueFull:
            await reservation.refund()
            raise InvalidInput("The speech queue here is full; try again when it has moved on.") from None
        where = "Speaking" if ahead == 0 else f"Queued ({ahead} ahead)"
        await interaction.followup.send(f"{where} in {channel.mention}: “{preview(spoken)}”")

    @say.autocomplete("voice")
    async def voice_autocomplete(
        self, interaction: discord.Interaction[Concord], current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=v, value=v) for v in fuzzy_matches(current, VOICES)]

    # -- the queue ---------------------------------------------------------------------------------

    def player_here(self, interaction: discord.Interaction[Concord]) -> GuildPlayer:
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        return self.voice.player(interaction.guild_id)

    @app_commands.command(name="queue", description="Show what is being said and what is waiting.")
    @server_only()
    async def queue(self, interaction: discord.Interaction[Concord]) -> None:
        player = self.player_here(interaction)
        if not player.busy:
            await reply(interaction, "Nothing is being said or waiting.", ephemeral=True)
            return
        lines = []
        if player.current is not None:
            lines.append(f"Now: <@{player.current.requester_id}> “{preview(player.current.text)}”")
        for number, item in enumerate(list(player.queue)[:20], start=1):
            lines.append(f"{number}. <@{item.requester_id}> “{preview(item.text)}”")
        if len(player.queue) > 20:
            lines.append(f"… and {len(player.queue) - 20} more")
        embed = result_embed(title="Speech queue", description="\n".join(lines), colour=TTS_COLOUR)
        await reply(interaction, embed=embed, ephemeral=True)

    @app_commands.command(name="skip", description="Skip what is being said (Move Members for others').")
    @server_only()
    async def skip(self, interaction: discord.Interaction[Concord]) -> None:
        player = self.player_here(interaction)
        current = player.current
        if current is None:
            await reply(interaction, "Nothing is being said.", ephemeral=True)
            return
        if current.requester_id != interaction.user.id and not interaction.permissions.move_members:
            raise app_commands.MissingPermissions(["move_members"])
        player.skip()
        await reply(interaction, f"Skipped “{preview(current.text)}”.", ephemeral=True)

    @app_commands.command(name="stop", description="Stop speaking and clear the queue (Move Members).")
    @server_only()
    async def stop(self, interaction: discord.Interaction[Concord]) -> None:
        if not interaction.permissions.move_members:
            raise app_commands.MissingPermissions(["move_members"])
        dropped = await self.player_here(interaction).stop()
        await reply(interaction, f"Stopped; {dropped} request(s) dropped.", ephemeral=True)

    @app_commands.command(name="leave", description="Make the bot leave its voice channel.")
    @server_only()
    async def leave(self, interaction: discord.Interaction[Concord]) -> None:
        player = self.player_here(interaction)
        channel = player.connected_channel
        if channel is None:
            await reply(interaction, "I'm not in a voice channel.", ephemeral=True)
            return
        member = interaction.guild.get_member(interaction.user.id) if interaction.guild else None
        with_us = member is not None and member.voice is not None and member.voice.channel == channel
        if not with_us and not interaction.permissions.move_members:
            raise app_commands.MissingPermissions(["move_members"])
        await player.leave()
        await reply(interaction, f"Left {channel.mention}.", ephemeral=True)

    # -- per-user voice ----------------------------------------------------------------------------

    @app_commands.command(name="voice", description="Set the voice /tts uses for you.")
    @app_commands.describe(name="A voice from the provider's list.")
    async def voice_command(self, interaction: discord.Interaction[Concord], name: str) -> None:
        voice = name.strip().lower()
        if voice not in VOICES:
            raise InvalidInput(f"Voices are {', '.join(VOICES)}.")
        await self.store.set_user_voice(interaction.user.id, voice)
        await reply(interaction, f"Your voice is now `{voice}`.", ephemeral=True)

    @voice_command.autocomplete("name")
    async def name_autocomplete(
        self, interaction: discord.Interaction[Concord], current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=v, value=v) for v in fuzzy_matches(current, VOICES)]

    # -- reading mode: settings --------------------------------------------------------------------

    def reading_lines(self, mode: ReadingMode | None) -> list[str]:
        if mode is None:
            lines = ["Reading mode is off."]
        else:
            role = f"<@&{mode.required_role_id}>" if mode.required_role_id else "none"
            lines = [
                f"Reading <#{mode.channel_id}> aloud while I'm in voice.",
                f"Announce the speaker: {'on' if mode.announce_speaker else 'off'} · "
                f"skip bots: {'on' if mode.skip_bots else 'off'} · "
                f"only members in my voice channel: {'on' if mode.voice_members_only else 'off'}",
                f"Required role: {role} · longest message read: {mode.max_chars} characters",
            ]
        note = message_content_note(self.bot.settings.message_content_intent)
        if note is not None:
            lines.append(note)
        return lines

    @reading.command(name="set", description="Read a channel aloud while in voice (Manage Server).")
    @app_commands.describe(
        channel="A text channel, or a voice channel's own text chat.",
        announce_speaker="Say who is speaking when the speaker changes.",
        skip_bots="Don't read messages from bots.",
        voice_members_only="Only read members who are in the bot's voice channel.",
        role="Only read members with this role.",
        max_length="Longest message read, in characters (longer ones are cut).",
    )
    @server_only()
    async def reading_set(
        self,
        interaction: discord.Interaction[Concord],
        channel: discord.TextChannel | discord.VoiceChannel,
        announce_speaker: bool = True,
        skip_bots: bool = True,
        voice_members_only: bool = True,
        role: discord.Role | None = None,
        max_length: app_commands.Range[int, 10, 1000] = 200,
    ) -> None:
        require_manage_guild(interaction)
        assert interaction.guild_id is not None
        if channel.guild.id != interaction.guild_id:
            raise InvalidInput("Pick a channel of this server.")
        mode = ReadingMode(
            guild_id=interaction.guild_id,
            channel_id=channel.id,
            announce_speaker=announce_speaker,
            skip_bots=skip_bots,
            voice_members_only=voice_members_only,
            required_role_id=role.id if role is not None else None,
            max_chars=min(max_length, self.bot.settings.tts_max_chars),
        )
        await self.store.set_reading(mode)
        await reply(interaction, "\n".join(self.reading_lines(mode)), ephemeral=True)

    @reading.command(name="off", description="Stop reading a channel aloud (Manage Server).")
    @server_only()
    async def reading_off(self, interaction: discord.Interaction[Concord]) -> None:
        require_manage_guild(interaction)
        assert interaction.guild_id is not None
        await self.store.clear_reading(interaction.guild_id)
        await reply(interaction, "Reading mode is off.", ephemeral=True)

    @reading.command(name="show", description="Show the reading-mode settings.")
    @server_only()
    async def reading_show(self, interaction: discord.Interaction[Concord]) -> None:
        assert interaction.guild_id is not None
        mode = await self.store.reading(interaction.guild_id)
        await reply(interaction, "\n".join(self.reading_lines(mode)), ephemeral=True)

    # -- reading mode: the listener ----------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        guild = message.guild
        me = self.bot.user
        if guild is None or me is None or message.author.id == me.id or not message.content:
            return
        mode = await self.store.reading(guild.id)
        if mode is None or message.channel.id != mode.channel_id:
            return
        player = self.voice.player(guild.id)
        channel = player.connected_channel
        author = message.author
        if channel is None or not isinstance(author, discord.Member):
            return
        if isinstance(message.channel, discord.VoiceChannel) and message.channel.id != channel.id:
            return  # a voice channel's text chat is read only while the bot is in that voice channel
        if mode.skip_bots and author.bot:
            return
        if mode.voice_members_only and (author.voice is None or author.voice.channel != channel):
            return
        if mode.required_role_id is not None and author.get_role(mode.required_role_id) is None:
            return
        lock = self._reading_locks.setdefault(guild.id, asyncio.Lock())
        async with lock:  # messages are spoken in the order they were sent
            await self.read_aloud(message, author, mode, player, channel)

    async def read_aloud(
        self,
        message: discord.Message,
        author: discord.Member,
        mode: ReadingMode,
        player: GuildPlayer,
        channel: Any,
    ) -> None:
        guild = author.guild
        config = await self.bot.guild_config.get(guild.id)
        if not config.is_enabled("tts"):
            return
        names = names_in(guild, [*message.mentions, *await mentioned_members(guild, message.content)])
        spoken = clip(speakable(message.content, names), mode.max_chars)
        if not spoken:
            return
        if mode.announce_speaker and player.last_speaker_id != author.id:
            spoken = f"{author.display_name} says: {spoken}"
        voice = await self.choose_voice(author.id, None, config.tts_voice)
        reservation = reserve_quota_for_message(self.bot.quotas, message, Feature.TTS)
        try:
            async with reservation:
                audio = await self.fetch_speech(spoken, voice)
        except QuotaExceeded:
            log.debug("Reading mode skipped a message of %s: quota used up", author.id)
            return
        except ConcordError as exc:
            log.info("Reading mode could not fetch speech in guild %s: %s", guild.id, exc)
            return

        async def settle(item: SpeechItem, outcome: Outcome) -> None:
            if outcome is not Outcome.PLAYED:
                await reservation.refund()

        item = SpeechItem(audio, spoken, author.id, channel.id, settle=settle, speaker_id=author.id)
        try:
            player.add(item)
        except QueueFull:
            await reservation.refund()
            return
        player.last_speaker_id = author.id

    # -- voice states ------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        await self.voice.on_voice_state_update(member, before, after)


async def setup(bot: Concord) -> None:
    await bot.add_cog(cast(commands.Cog, Tts(bot)))
