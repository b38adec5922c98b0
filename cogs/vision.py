"""Vision: /vision on an attachment and the "Describe image" menu, with a "prompt" mode for /imagine."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.discordkit.checks import reserve_quota
from bot.discordkit.embeds import result_embed
from bot.discordkit.image_buttons import single_view
from bot.discordkit.media import first_image, image_attachment
from bot.discordkit.vision_buttons import VisionRetryButton, retry_view
from bot.discordkit.write_budget import Priority
from bot.errors import ConcordError, FeatureUnavailable, InvalidInput
from bot.providers import Capability, ProviderUnavailable, VisionResult
from bot.services.fetcher import FetchRefused
from bot.services.image_options import PROMPT_MAX, ImageSettings, Offer, imagine_settings, offer_of
from bot.services.quotas import Feature
from bot.services.vision import NO_IMAGE, NO_VISION, PROMPT_QUESTION, VisionAsk, check_image_attachment

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)

VISION_COLOUR = 0x57F287
# Failures worth a Retry button: the service or the download, not the user's own input or quota.
RETRYABLE = (ProviderUnavailable, FetchRefused)


class Vision(commands.Cog):
    """Answers questions about images people attach."""

    def __init__(self, bot: Concord) -> None:
        self.bot = bot
        self.describe_menu = app_commands.ContextMenu(name="Describe image", callback=self.describe_image)
        self.bot.tree.add_command(self.describe_menu)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(VisionRetryButton)
        if self.bot.providers.available(Capability.VISION_MODELS):
            self.bot.catalog.refresh_soon("vision")

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(VisionRetryButton)
        self.bot.tree.remove_command(self.describe_menu.name, type=self.describe_menu.type)

    @app_commands.command(name="vision", description="Ask about an image")
    @app_commands.describe(
        image="The image to look at",
        question="What to ask about it (default: describe it)",
        model="Vision model (default: the server's vision model)",
        mode="describe: answer the question; prompt: write a prompt for /imagine from the image",
    )
    async def vision(
        self,
        interaction: discord.Interaction[Any],
        image: discord.Attachment,
        question: app_commands.Range[str, 1, 1000] | None = None,
        model: app_commands.Range[str, 1, 100] | None = None,
        mode: Literal["describe", "prompt"] = "describe",
    ) -> None:
        await self.answer(interaction, image, question=question, model=model, mode=mode)

    @vision.autocomplete("model")
    async def vision_models(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=n, value=n) for n in self.bot.catalog.matches(current, "vision")]

    async def describe_image(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        file = first_image(message.attachments)
        if file is None:
            raise InvalidInput(NO_IMAGE)
        await self.answer(interaction, file, question=None, model=None, mode="describe")

    async def answer(
        self,
        interaction: discord.Interaction[Any],
        file: discord.Attachment,
        *,
        question: str | None,
        model: str | None,
        mode: str,
    ) -> None:
        """Refuse what can be refused without a download, defer, take quota, look, answer."""
        vision = self.bot.vision
        if not vision.available:
            raise FeatureUnavailable(NO_VISION)
        await self.bot.guild_config.ensure_enabled(interaction.guild_id, "vision")
        attachment = image_attachment(file)
        check_image_attachment(attachment, max_bytes=vision.max_bytes)
        if model is None and interaction.guild_id is not None:
            model = (await self.bot.guild_config.get(interaction.guild_id)).vision_model
        await interaction.response.defer(thinking=True)
        ask = VisionAsk(attachment=attachment, question=question, model=model, mode=mode)
        await self._look(interaction, ask, owner_id=interaction.user.id, ask_id=None)

    async def vision_retry_pressed(
        self, interaction: discord.Interaction[Any], button: VisionRetryButton
    ) -> None:
        """Ask the stored question again, in place: the failure message becomes the answer."""
        vision = self.bot.vision
        if not vision.available:
            raise FeatureUnavailable(NO_VISION)
        owner_id, ask = await self.bot.image_results.get_vision(button.ask_id)
        await self.bot.guild_config.ensure_enabled(interaction.guild_id, "vision")
        await interaction.response.defer()
        await self._look(interaction, ask, owner_id=owner_id, ask_id=button.ask_id)

    async def _look(
        self, interaction: discord.Interaction[Any], ask: VisionAsk, *, owner_id: int, ask_id: int | None
    ) -> None:
        """Take quota, ask, answer in the original response; a service failure keeps the question to retry."""
        filename = ask.attachment.filename[:80]
        await self._final(
            interaction, content=f"👀 Looking at `{filename}`…", view=None, priority=Priority.NORMAL
        )
        asked = PROMPT_QUESTION if ask.mode == "prompt" else ask.question
        try:
            async with reserve_quota(self.bot.quotas, interaction, Feature.VISION):
                result = await self.bot.vision.describe(ask.attachment, asked, model=ask.model)
        except RETRYABLE as exc:
            log.info("Vision on %s failed: %s", filename, exc)
            if ask_id is None:
                ask_id = await self.bot.image_results.create_vision(
                    ask, owner_id=owner_id, guild_id=interaction.guild_id, channel_id=interaction.channel_id
                )
            await self._final(interaction, content=f"⚠️ {exc.user_message}", view=retry_view(owner_id, ask_id))
            return
        except ConcordError as exc:
            # The deferred answer says what went wrong in place of "Looking at…".
            await self._final(interaction, content=f"⚠️ {exc.user_message}", view=None)
            return
        if ask_id is not None:
            await self.bot.image_results.forget(ask_id)
        if ask.mode == "prompt":
            await self._offer_prompt(interaction, result)
            return
        embed = result_embed(
            title="Vision",
            description=result.text,
            colour=VISION_COLOUR,
            fields=[
                ("Question", ask.question or "Describe this image.", False),
                ("Model", result.model or "default", True),
            ],
            thumbnail_url=ask.attachment.url,
            footer=f"via {result.provider}",
        )
        await self._final(interaction, content=None, embed=embed, view=None)

    async def _offer_prompt(self, interaction: discord.Interaction[Any], result: VisionResult) -> None:
        """The prompt the model wrote, with a button that draws it with /imagine's default model."""
        prompt = result.text.strip().strip('"')[:PROMPT_MAX]
        embed = result_embed(
            title="A prompt for /imagine",
            description=prompt,
            colour=VISION_COLOUR,
            footer=f"via {result.provider}",
        )
        offer = self._imagine_offer()
        if offer is None:
            await self._final(interaction, content=None, embed=embed, view=None)
            return
        settings: ImageSettings = imagine_settings(offer, prompt=prompt, model=None, given={})
        result_id = await self.bot.image_results.create(
            settings,
            owner_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
        )
        view = single_view("run", interaction.user.id, result_id)
        await self._final(interaction, content=None, embed=embed, view=view)

    def _imagine_offer(self) -> Offer | None:
        offer = offer_of(self.bot.providers, self.bot.catalog.names("imagine"))
        return offer if offer.airforce_imagine or offer.anyai_imagine or offer.generations else None

    async def _final(
        self, interaction: discord.Interaction[Any], *, priority: Priority = Priority.FINAL, **kwargs: Any
    ) -> None:
        async def op() -> Any:
            return await interaction.edit_original_response(**kwargs)

        await self.bot.write_budget.write(interaction.channel_id or 0, op, priority=priority)


async def setup(bot: Concord) -> None:
    await bot.add_cog(Vision(bot))
