"""Image generation: /imagine and /flux, and the buttons under every result."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.discordkit.checks import reserve_quota
from bot.discordkit.embeds import result_embed
from bot.discordkit.image_buttons import ImageButton, result_view, single_view
from bot.discordkit.media import fit_upload
from bot.discordkit.responses import reply
from bot.discordkit.tree import explain
from bot.discordkit.write_budget import Priority
from bot.errors import ConcordError, InvalidInput
from bot.providers import Capability, ProviderUnavailable
from bot.services.fetcher import FetchRefused
from bot.services.image_generation import Drawn, GenerationFailed, failure_line
from bot.services.image_options import (
    AIRFORCE_SIZES,
    ANYAI_MODELS,
    DALLE_MODELS,
    DALLE_SIZES,
    PROMPT_MAX,
    SEED_MAX,
    Backend,
    ImageSettings,
    Offer,
    flux_settings,
    imagine_settings,
    offer_of,
)
from bot.services.model_catalog import fuzzy_matches
from bot.services.quotas import Feature

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)

PROGRESS_EVERY = 2.0
RESULT_COLOUR = 0x5865F2
NOT_YOURS_ANYMORE = "That image was deleted."
# Failures worth a Retry button: the service or the download, not the user's own input or quota.
RETRYABLE = (ProviderUnavailable, GenerationFailed, FetchRefused)
Edit = Callable[..., Awaitable[Any]]


def feature_of(settings: ImageSettings) -> tuple[Feature, str]:
    """The quota feature and the /config capability switch a generation counts against."""
    if settings.backend in (Backend.FLUX, Backend.GENERATIONS):
        return Feature.IMAGE, "image"
    return Feature.IMAGINE, "imagine"


def progress_text(settings: ImageSettings, elapsed: float | None = None) -> str:
    what = f"{settings.count} images" if settings.count > 1 else "an image"
    model = settings.model or "FLUX"
    suffix = f" ({elapsed:.0f} s)" if elapsed is not None else ""
    return f"🎨 Generating {what} with {model}…{suffix}"


def settings_fields(settings: ImageSettings, requester: int, *, full: bool) -> list[tuple[str, str, bool]]:
    fields = [
        ("Model", settings.model or "FLUX (default)", True),
        ("Seed", str(settings.seed) if settings.seed is not None else "—", True),
        ("Size", settings.size_label, True),
        ("Requested by", f"<@{requester}>", True),
    ]
    if full:
        fields += [
            ("Command", f"/{settings.command}", True),
            ("Images", str(settings.count), True),
            ("Steps", str(settings.steps) if settings.steps is not None else "default", True),
            ("Negative prompt", settings.negative_prompt or "—", False),
        ]
        if settings.quality is not None:
            fields.append(("Quality", settings.quality, True))
        if settings.fast:
            fields.append(("Endpoint", "fast (/imagine2)", True))
    return fields


class Imagine(commands.Cog):
    """Draws images with the configured gateways and answers the buttons under the results."""

    def __init__(self, bot: Concord) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ImageButton)
        if any(p.profile == "airforce" for p in self.bot.providers.providers):
            self.bot.catalog.refresh_soon("imagine")
        if self.bot.providers.available(Capability.FLUX_MODELS):
            self.bot.catalog.refresh_soon("flux")

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ImageButton)

    # --- what can be drawn here ------------------------------------------------------------------------

    def offer(self) -> Offer:
        return offer_of(self.bot.providers, self.bot.catalog.names("imagine"))

    async def default_model(self, guild_id: int | None, kind: str) -> str | None:
        """The server's `/config model image` default, when it names a model of this command's kind."""
        if guild_id is None:
            return None
        chosen = (await self.bot.guild_config.get(guild_id)).image_model
        if chosen is None:
            return None
        if kind == "flux":
            return chosen if chosen in self.bot.catalog.names("flux") else None
        offer = self.offer()
        imagine_models = {*self.bot.catalog.names("imagine"), *ANYAI_MODELS, *DALLE_MODELS}
        return (
            chosen
            if chosen in imagine_models
            and (offer.airforce_imagine or offer.anyai_imagine or offer.generations)
            else None
        )

    # --- commands --------------------------------------------------------------------------------------

    @app_commands.command(name="imagine", description="Draw images from a prompt")
    @app_commands.describe(
        prompt="What to draw",
        model="Image model (default: the server's image model)",
        size="Aspect ratio (airforce models) or WxH (dall-e)",
        width="Width in pixels (sdxl, dall-e on anyai)",
        height="Height in pixels (sdxl, dall-e on anyai)",
        seed="Seed, for the same picture again",
        steps="Drawing steps (sdxl)",
        negative_prompt="What not to draw (sdxl, pluto)",
        count="How many images (1-4)",
        quality="standard or hd (dall-e-3 only)",
        fast="Use the fast endpoint (airforce models only)",
    )
    async def imagine(
        self,
        interaction: discord.Interaction[Any],
        prompt: app_commands.Range[str, 1, PROMPT_MAX],
        model: app_commands.Range[str, 1, 100] | None = None,
        size: app_commands.Range[str, 1, 20] | None = None,
        width: app_commands.Range[int, 64, 2048] | None = None,
        height: app_commands.Range[int, 64, 2048] | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        steps: app_commands.Range[int, 1, 100] | None = None,
        negative_prompt: app_commands.Range[str, 1, PROMPT_MAX] | None = None,
        count: app_commands.Range[int, 1, 4] | None = None,
        quality: Literal["standard", "hd"] | None = None,
        fast: bool | None = None,
    ) -> None:
        given = {
            "size": size,
            "width": width,
            "height": height,
            "seed": seed,
            "steps": steps,
            "negative_prompt": negative_prompt,
            "count": count,
            "quality": quality,
            "fast": True if fast else None,
        }
        default = None if model else await self.default_model(interaction.guild_id, "imagine")
        settings = imagine_settings(
            self.offer(), prompt=prompt, model=model, default_model=default, given=given
        )
        await self.start(interaction, settings)

    @app_commands.command(name="flux", description="Draw images with FLUX")
    @app_commands.describe(
        prompt="What to draw",
        model="FLUX model (default: the server's image model, else the gateway's)",
        steps="Drawing steps (1-4)",
        count="How many images (1-4), shown as a gallery",
        seed="Seed, for the same picture again",
        width="Width in pixels, a multiple of 16",
        height="Height in pixels, a multiple of 32",
        negative_prompt="What not to draw",
    )
    async def flux(
        self,
        interaction: discord.Interaction[Any],
        prompt: app_commands.Range[str, 1, PROMPT_MAX],
        model: app_commands.Range[str, 1, 100] | None = None,
        steps: app_commands.Range[int, 1, 4] | None = None,
        count: app_commands.Range[int, 1, 4] | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        width: app_commands.Range[int, 64, 2048] | None = None,
        height: app_commands.Range[int, 64, 2048] | None = None,
        negative_prompt: app_commands.Range[str, 1, PROMPT_MAX] | None = None,
    ) -> None:
        given = {
            "steps": steps,
            "count": count,
            "seed": seed,
            "width": width,
            "height": height,
            "negative_prompt": negative_prompt,
        }
        chosen = model or await self.default_model(interaction.guild_id, "flux")
        settings = flux_settings(self.offer(), prompt=prompt, model=chosen, given=given)
        await self.start(interaction, settings)

    @imagine.autocomplete("model")
    async def imagine_models(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        offer = self.offer()
        names = list(self.bot.catalog.matches(current, "imagine")) if offer.airforce_imagine else []
        if offer.anyai_imagine:
            names += ANYAI_MODELS
        elif offer.generations:
            names += DALLE_MODELS
        return [app_commands.Choice(name=n, value=n) for n in fuzzy_matches(current, dict.fromkeys(names))]

    @imagine.autocomplete("size")
    async def imagine_sizes(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        sizes = dict.fromkeys([*AIRFORCE_SIZES, *DALLE_SIZES["dall-e-3"], *DALLE_SIZES["dall-e-2"]])
        return [app_commands.Choice(name=s, value=s) for s in fuzzy_matches(current, sizes)]

    @flux.autocomplete("model")
    async def flux_models(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=n, value=n) for n in self.bot.catalog.matches(current, "flux")]

    # --- one generation, from a command or a button -----------------------------------------------------

    async def start(self, interaction: discord.Interaction[Any], settings: ImageSettings) -> None:
        """Check the server's switch, defer at once, store the settings, then draw."""
        await self.bot.guild_config.ensure_enabled(interaction.guild_id, feature_of(settings)[1])
        await interaction.response.defer(thinking=True)
        result_id = await self.bot.image_results.create(
            settings,
            owner_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
        )
        await self.generate(interaction, result_id, settings, owner_id=interaction.user.id)

    async def generate(
        self, interaction: discord.Interaction[Any], result_id: int, settings: ImageSettings, *, owner_id: int
    ) -> None:
        """Draw into the interaction's original response (deferred already): progress, then the result or
        a one-line failure with Retry. Quota is taken before the call and refunded when nothing came."""
        channel_id = interaction.channel_id or 0
        budget = self.bot.write_budget
        feature, _ = feature_of(settings)
        started = time.monotonic()
        last_progress: asyncio.Future[Any] | None = None

        def write(priority: Priority, **kwargs: Any) -> asyncio.Future[Any]:
            return budget.submit(
                channel_id,
                lambda: interaction.edit_original_response(**kwargs),
                priority=priority,
                key=("image-progress", interaction.id) if priority is Priority.PROGRESS else None,
            )

        async def progress() -> None:
            nonlocal last_progress
            elapsed: float | None = None
            while True:
                last_progress = write(Priority.PROGRESS, content=progress_text(settings, elapsed))
                await asyncio.sleep(PROGRESS_EVERY)
                elapsed = time.monotonic() - started

        ticker = asyncio.create_task(progress())
        try:
            async with reserve_quota(self.bot.quotas, interaction, feature, units=settings.count):
                drawn = await self.bot.image_generator.draw(settings)
        except RETRYABLE as exc:
            await self._stop(ticker, last_progress)
            line = failure_line(exc)
            log.info("Image generation %s failed: %s", result_id, exc)
            await write(
                Priority.FINAL,
                content=f"⚠️ {line}",
                embeds=[],
                attachments=[],
                view=single_view("retry", owner_id, result_id),
            )
            return
        except ConcordError as exc:
            await self._stop(ticker, last_progress)
            await write(Priority.FINAL, content=exc.user_message, embeds=[], attachments=[], view=None)
            return
        except BaseException:
            await self._stop(ticker, last_progress)
            raise
        await self._stop(ticker, last_progress)
        files, linked = self._fit(drawn, interaction.filesize_limit)
        embed = self._result_embed(settings, owner_id, drawn, files, linked)
        view = result_view(owner_id, result_id, len(files))
        message = await write(Priority.FINAL, content=None, embeds=[embed], attachments=files, view=view)
        await self.bot.image_results.record(
            result_id, settings=settings, message_id=message.id, provider=drawn.provider
        )

    @staticmethod
    async def _stop(ticker: asyncio.Task[None], last: asyncio.Future[Any] | None) -> None:
        """End the progress edits, and wait for a queued one so it cannot land after the result."""
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        if last is not None:
            with contextlib.suppress(Exception):
                await last

    @staticmethod
    def _fit(drawn: Drawn, limit: int) -> tuple[list[discord.File], list[str]]:
        """Files under the upload limit (re-encoded smaller if needed); links for what still won't fit."""
        files: list[discord.File] = []
        linked: list[str] = []
        for image in drawn.images:
            fitted = fit_upload(image.data, image.filename, limit)
            if fitted is not None:
                files.append(discord.File(io.BytesIO(fitted.data), filename=fitted.filename))
            elif image.source_url is not None:
                linked.append(image.source_url)
            else:
                raise GenerationFailed("The image is too large to post here, even made smaller.")
        return files, linked

    @staticmethod
    def _result_embed(
        settings: ImageSettings, owner_id: int, drawn: Drawn, files: list[discord.File], linked: list[str]
    ) -> discord.Embed:
        fields = settings_fields(settings, owner_id, full=False)
        if linked:
            links = " ".join(f"[image {i + 1}]({url})" for i, url in enumerate(linked))
            fields.append(("Too large to attach", links, False))
        return result_embed(
            title="FLUX" if settings.command == "flux" else "Imagine",
            description=settings.prompt,
            colour=RESULT_COLOUR,
            fields=fields,
            image_url=f"attachment://{files[0].filename}" if len(files) == 1 else None,
            footer=f"via {drawn.provider}",
        )

    # --- buttons -----------------------------------------------------------------------------------------

    async def image_button_pressed(self, interaction: discord.Interaction[Any], button: ImageButton) -> None:
        action = button.action
        if action == "open":
            await self._open(interaction, button)
            return
        stored = await self.bot.image_results.get(button.result_id)
        if action == "info":
            embed = result_embed(
                title="Image settings",
                description=stored.settings.prompt,
                colour=RESULT_COLOUR,
                fields=settings_fields(stored.settings, stored.owner_id, full=True),
                footer=f"via {stored.provider}" if stored.provider else None,
            )
            await reply(interaction, embed=embed, ephemeral=True)
            return
        if action == "del":
            await interaction.response.defer(ephemeral=True, thinking=True)
            message = interaction.message
            if message is not None:
                await self.bot.write_budget.write(interaction.channel_id or 0, message.delete)
            await self.bot.image_results.forget(stored.id)
            await interaction.followup.send("Deleted.", ephemeral=True)
            return
        if action == "edit":
            await interaction.response.send_modal(EditPromptForm(self, stored.settings))
            return
        settings = stored.settings
        if action in ("regen", "var"):
            settings = settings.reseeded()
        await self.bot.guild_config.ensure_enabled(interaction.guild_id, feature_of(settings)[1])
        if action == "retry":
            # In place: the failure message becomes the result.
            await interaction.response.defer()
            await self.generate(interaction, stored.id, settings, owner_id=stored.owner_id)
            return
        # Regenerate, Variations and "Imagine this" post a new message, so the earlier result stays.
        await interaction.response.defer(thinking=True)
        result_id = stored.id
        if action in ("regen", "var"):
            result_id = await self.bot.image_results.create(
                settings,
                owner_id=interaction.user.id,
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
            )
        await self.generate(interaction, result_id, settings, owner_id=interaction.user.id)

    async def _open(self, interaction: discord.Interaction[Any], button: ImageButton) -> None:
        """One image of a gallery on its own at full size (privately: nothing new in the channel)."""
        attachments = interaction.message.attachments if interaction.message is not None else []
        index = button.index or 0
        if index >= len(attachments):
            raise InvalidInput("That image is no longer attached to the message.")
        image = attachments[index]
        embed = result_embed(
            title=f"Image {index + 1} of {len(attachments)}", image_url=image.url, url=image.url
        )
        await reply(interaction, embed=embed, ephemeral=True)

    async def edited_prompt(
        self, interaction: discord.Interaction[Any], settings: ImageSettings, prompt: str
    ) -> None:
        if not prompt.strip():
            raise InvalidInput("The prompt can't be empty.")
        await self.start(interaction, settings.reseeded(prompt=prompt))


class EditPromptForm(discord.ui.Modal, title="Edit prompt"):
    """The prompt, prefilled, for a new generation with otherwise the same settings."""

    def __init__(self, cog: Imagine, settings: ImageSettings) -> None:
        super().__init__(timeout=600, custom_id="concord:img:edit-form")
        self.cog = cog
        self.settings = settings
        self.prompt: discord.ui.TextInput[EditPromptForm] = discord.ui.TextInput(
            label="Prompt", style=discord.TextStyle.paragraph, default=settings.prompt[:4000], max_length=4000
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        await self.cog.edited_prompt(interaction, self.settings, self.prompt.value)

    async def on_error(  # type: ignore[override]  # Modal.on_error takes no item
        self, interaction: discord.Interaction[Any], error: Exception, /
    ) -> None:
        with contextlib.suppress(discord.HTTPException):
            await reply(interaction, explain(error, where="Edit prompt form"), ephemeral=True)


async def setup(bot: Concord) -> None:
    await bot.add_cog(Imagine(bot))
