"""/suno create|status|cancel: songs as durable jobs that the bot's runner polls until delivered."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.discordkit.checks import reserve_quota
from bot.discordkit.write_budget import Priority
from bot.errors import InvalidInput
from bot.providers.errors import OutcomeUnknown
from bot.providers.types import SunoRequest
from bot.services.quotas import Feature
from bot.services.song_jobs import SongJob
from cogs.songs.delivery import DiscordSongDelivery
from cogs.songs.render import jobs_embed, status_embed
from cogs.songs.views import COG_NAME, CancelButton, cancel_view

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)

SunoModel = Literal["chirp-v3-5", "chirp-v3-0", "chirp-v2-xxl-alpha"]
PROMPT_MAX = 200
STYLE_MAX = 120
CUSTOM_MAX = 1250
CUSTOM_MAX_V35 = 3000
# Discord keeps an interaction's token for 15 minutes; stop using it a little before that.
TOKEN_LIFETIME = timedelta(minutes=15) - timedelta(seconds=30)


def check_limits(prompt: str, style: str | None, custom: bool, model: str) -> None:
    """The seed's documented limits, checked before any quota or call; one sentence when broken."""
    if model not in ("chirp-v3-5", "chirp-v3-0", "chirp-v2-xxl-alpha"):
        raise InvalidInput("The model must be chirp-v3-5, chirp-v3-0 or chirp-v2-xxl-alpha.")
    if not prompt.strip():
        raise InvalidInput("The prompt is empty.")
    if custom:
        limit = CUSTOM_MAX_V35 if model == "chirp-v3-5" else CUSTOM_MAX
        if len(prompt) > limit:
            raise InvalidInput(
                f"Custom lyrics can be at most {limit:,} characters with {model} (yours has {len(prompt):,})."
            )
        if style is None:
            raise InvalidInput("Custom lyrics need a style (1–120 characters), e.g. `style: synthwave`.")
    elif len(prompt) > PROMPT_MAX:
        raise InvalidInput(
            f"A song prompt can be at most {PROMPT_MAX} characters (yours has {len(prompt):,}); "
            "for longer lyrics set `custom: true`."
        )
    if style is not None and not 1 <= len(style.strip()) <= STYLE_MAX:
        raise InvalidInput(f"The style must be 1–{STYLE_MAX} characters.")


class Songs(commands.GroupCog, name=COG_NAME, group_name="suno", group_description="Make songs with Suno"):
    """Songs that survive restarts."""

    def __init__(self, bot: Concord) -> None:
        self.bot = bot
        self.runner = bot.song_jobs
        self.store = bot.song_jobs.store
        self._user_locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        super().__init__()

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CancelButton)
        self.runner.attach(DiscordSongDelivery(self.bot))

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(CancelButton)
        await self.runner.stop()

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)

    # --- /suno create ------------------------------------------------------------------------------

    @app_commands.command(name="create", description="Make a song from a prompt (or your own lyrics).")
    @app_commands.describe(
        prompt="What the song is about (up to 200 characters), or your lyrics when custom is on",
        style="Genre or style, 1–120 characters (needed with custom lyrics)",
        instrumental="Make it without vocals",
        custom="The prompt is your own lyrics (up to 1,250 characters, 3,000 with chirp-v3-5)",
        model="Suno model (default chirp-v3-5)",
    )
    async def create(
        self,
        interaction: discord.Interaction[Concord],
        prompt: app_commands.Range[str, 1, CUSTOM_MAX_V35],
        style: app_commands.Range[str, 1, STYLE_MAX] | None = None,
        instrumental: bool = False,
        custom: bool = False,
        model: SunoModel = "chirp-v3-5",
    ) -> None:
        check_limits(prompt, style, custom, model)
        channel_id = interaction.channel_id
        if channel_id is None:
            raise InvalidInput("Songs can't be made in this kind of channel.")
        await self.bot.guild_config.ensure_enabled(interaction.guild_id, "songs")
        user = interaction.user
        async with self._user_locks[user.id]:
            active = await self.store.active_groups(user.id)
            cap = self.bot.settings.song_max_active
            if active >= cap:
                raise InvalidInput(
                    f"You already have {active} song request(s) generating (the limit is {cap}); "
                    "wait for one to finish or stop one with `/suno cancel`."
                )
            request = SunoRequest(
                prompt=prompt, model=model, instrumental=instrumental, style=style, custom=custom
            )
            # Quota before the defer (a denial is the first, private answer) and before the POST.
            async with reserve_quota(self.bot.quotas, interaction, Feature.SONGS) as reservation:
                await interaction.response.defer(thinking=True)
                try:
                    job = await self.bot.providers.suno_create(request)
                except OutcomeUnknown:
                    # The job may exist and be billed: the quota stays taken, and nothing is resent.
                    reservation.keep()
                    raise
                reservation.keep()
            now = self._now()
            created = interaction.created_at.astimezone(UTC)
            rows = await self.store.create_group(
                user_id=user.id,
                guild_id=interaction.guild_id,
                channel_id=channel_id,
                provider=job.provider,
                clip_ids=job.clip_ids,
                request={
                    "prompt": prompt,
                    "style": style,
                    "instrumental": instrumental,
                    "custom": custom,
                    "model": model,
                },
                interaction_token=interaction.token,
                interaction_expires_at=created + TOKEN_LIFETIME,
                first_poll_at=now + timedelta(seconds=self.runner.policy.first),
                now=now,
            )
        log.info(
            "Song request %s: %d clip(s) from %s for user %s",
            rows[0].group_id,
            len(rows),
            job.provider,
            user.id,
        )
        message_id = await self._answer(interaction, rows)
        await self.store.set_status_message(rows[0].group_id, message_id)
        self.runner.wake()

    async def _answer(self, interaction: discord.Interaction[Concord], rows: list[SongJob]) -> int:
        embed = status_embed(rows, self._now())
        view = cancel_view(interaction.user.id, rows[0].group_id)

        async def edit() -> discord.InteractionMessage:
            return await interaction.edit_original_response(embed=embed, view=view)

        message = await self.bot.write_budget.write(
            interaction.channel_id or 0, edit, priority=Priority.FINAL, key=("song-status", rows[0].group_id)
        )
        return int(message.id)

    # --- /suno status and cancel -------------------------------------------------------------------

    async def _groups(self, user_id: int) -> list[list[SongJob]]:
        groups: dict[str, list[SongJob]] = {}
        for job in await self.store.for_user(user_id, limit=30):
            groups.setdefault(job.group_id, []).append(job)
        ordered = sorted(groups.values(), key=lambda g: g[0].created_at, reverse=True)[:10]
        return [sorted(g, key=lambda j: int(j.result.get("index", 0))) for g in ordered]

    @app_commands.command(name="status", description="List your song requests: state, age and link.")
    async def status(self, interaction: discord.Interaction[Concord]) -> None:
        groups = await self._groups(interaction.user.id)
        await interaction.response.send_message(embed=jobs_embed(groups, self._now()), ephemeral=True)

    async def request_autocomplete(
        self, interaction: discord.Interaction[Concord], current: str
    ) -> list[app_commands.Choice[str]]:
        choices = []
        for group in await self._groups(interaction.user.id):
            if not any(job.active for job in group):
                continue
            first = group[0]
            name = f"{first.group_id[:8]} · {first.prompt}"
            if current.lower() in name.lower():
                choices.append(app_commands.Choice(name=name[:100], value=first.group_id))
        return choices[:25]

    @app_commands.command(
        name="cancel", description="Stop watching one of your songs that is still generating."
    )
    @app_commands.describe(request="The request id that /suno status shows")
    @app_commands.autocomplete(request=request_autocomplete)
    async def cancel(
        self, interaction: discord.Interaction[Concord], request: app_commands.Range[str, 1, 36]
    ) -> None:
        group_id = await self.store.find_group(interaction.user.id, request.strip().lower())
        if group_id is None:
            raise InvalidInput("You have no song request with that id; `/suno status` lists yours.")
        stopped = await self.store.cancel(group_id, interaction.user.id, self._now())
        if not stopped:
            raise InvalidInput("That song request is not generating any more, so there is nothing to cancel.")
        await interaction.response.send_message(
            f"Stopped watching {stopped} clip(s) of request `{group_id[:8]}`.", ephemeral=True
        )
        await self.runner.refresh(group_id)

    async def cancel_pressed(self, interaction: discord.Interaction[Any], button: CancelButton) -> None:
        stopped = await self.store.cancel(button.group_id, button.owner_id, self._now())
        if not stopped:
            await interaction.response.send_message(
                "That song request is not generating any more, so there is nothing to cancel.", ephemeral=True
            )
        else:
            await interaction.response.defer()  # the status message is edited below
        await self.runner.refresh(button.group_id)
