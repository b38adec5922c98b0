"""The Chat cog: /chat, mentions, replies and DMs get a streamed reply; /reset, /history and /models."""

from __future__ import annotations

import contextlib
import difflib
import logging
import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discordkit.embeds import result_embed
from bot.discordkit.live_reply import NO_PINGS, ChannelTarget, InteractionTarget
from bot.discordkit.responses import refusals_stay_private
from bot.discordkit.tree import explain
from bot.discordkit.write_budget import Priority
from bot.errors import InvalidInput
from bot.services.conversations import Turn, clean_display_name
from bot.services.turn_gate import Ticket
from cogs.chat.attachments import check_attachment, read_attachment
from cogs.chat.buttons import ButtonHandler
from cogs.chat.engine import TurnEngine, TurnRequest, check_enabled, check_input, image_question, parent_id
from cogs.chat.history import export_files
from cogs.chat.views import RegenerateButton, StopButton

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)


class Chat(commands.Cog, name="Chat"):
    """Conversations with the AI, remembered per channel."""

    def __init__(self, bot: Concord) -> None:
        self.bot = bot
        self.settings = bot.settings
        self.store = bot.conversations
        self.catalog = bot.catalog
        self.budget = bot.write_budget
        self.engine = TurnEngine(bot)
        self.buttons = ButtonHandler(bot, self.engine)
        self._mention = re.compile(r"<@!?(\d+)>")

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(StopButton, RegenerateButton)
        self.bot.shutdown_hooks.append(self.engine.drain)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(StopButton, RegenerateButton)
        with contextlib.suppress(ValueError):
            self.bot.shutdown_hooks.remove(self.engine.drain)
        await self.engine.close()

    # The buttons (cogs/chat/views.py) find the cog by name and call these.
    async def stop_pressed(self, interaction: discord.Interaction[Any], button: StopButton) -> None:
        await self.buttons.stop_pressed(interaction, button)

    async def regenerate_pressed(
        self, interaction: discord.Interaction[Any], button: RegenerateButton
    ) -> None:
        await self.buttons.regenerate_pressed(interaction, button)

    # --- /chat -------------------------------------------------------------------------------------------

    async def model_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return [
            app_commands.Choice(name=name[:100], value=name[:100]) for name in self.catalog.matches(current)
        ]

    @app_commands.command(
        name="chat", description="Talk to the AI; the conversation in this channel is remembered."
    )
    @app_commands.describe(
        prompt="What you want to say or ask",
        model="Chat model to use (default: the server's or the bot's)",
        private="Answer only you, and keep this turn out of the channel's history",
        file="A text file to include with your prompt",
    )
    @app_commands.autocomplete(model=model_autocomplete)
    async def chat(
        self,
        interaction: discord.Interaction[Concord],
        prompt: app_commands.Range[str, 1, 6000],
        model: app_commands.Range[str, 1, 200] | None = None,
        private: bool = False,
        file: discord.Attachment | None = None,
    ) -> None:
        channel = interaction.channel
        if channel is None or interaction.channel_id is None:
            raise InvalidInput("I can't chat in this kind of channel.")
        ticket = self.engine.enter(interaction.channel_id, interaction.user.id)
        try:
            await self._chat(interaction, ticket, channel, prompt, model, private, file)
        finally:
            self.engine.leave(ticket)  # (already left when the turn ran; a refusal leaves here)

    async def _chat(
        self,
        interaction: discord.Interaction[Concord],
        ticket: Ticket,
        channel: Any,
        prompt: str,
        model: str | None,
        private: bool,
        file: discord.Attachment | None,
    ) -> None:
        assert interaction.channel_id is not None
        settings = await self.engine.channel_settings(
            interaction.guild_id, interaction.channel_id, parent_id(channel)
        )
        check_enabled(settings)
        if model is not None:
            await self._check_model(model)
        asked_image = await image_question(self.bot, [file], interaction.guild_id) if file else None
        if file is not None and asked_image is None:
            check_attachment(file, self.settings.chat_attachment_max_bytes)
        # Acknowledged before any database work; a refusal after this (quota, the input limit, the file)
        # still reaches only the user.
        deferred = await interaction.response.defer(thinking=True, ephemeral=private)
        quota_model = model or settings.model or self.settings.chat_default_model
        async with contextlib.AsyncExitStack() as held:
            async with refusals_stay_private(interaction):
                reservation = await held.enter_async_context(
                    self.engine.reserve_quota(
                        interaction.user, interaction.guild_id, quota_model, image=asked_image is not None
                    )
                )
                text = prompt
                if file is not None and asked_image is None:  # the file's text counts toward the limit
                    text += await read_attachment(
                        file, self.settings.chat_attachment_max_bytes, self.bot.fetcher
                    )
                check_input(text, reservation.plan, settings)
            request = TurnRequest(
                channel_id=interaction.channel_id,
                guild_id=interaction.guild_id,
                parent_id=parent_id(channel),
                author=interaction.user,
                prompt=text,
                model=model,
                private=private,
                # The deferred response becomes the reply's first page: its id is known before it is written.
                target=InteractionTarget(
                    interaction, ephemeral=private, original_id=deferred.message_id if deferred else None
                ),
                reservation=reservation,
                image=asked_image[0] if asked_image else None,
                vision_model=asked_image[1] if asked_image else None,
            )
            await self.engine.run(request, ticket, settings)

    async def _check_model(self, model: str) -> None:
        """Only models in the catalog; an unknown one is refused with up to three close matches."""
        known = self.catalog.names("chat")
        if model not in known and self.catalog.is_stale("chat"):
            await self.catalog.refresh("chat")
            known = self.catalog.names("chat")
        if model in known:
            return
        close = difflib.get_close_matches(model, known, n=3, cutoff=0.5) or self.catalog.matches(model)[:3]
        hint = f" Did you mean {', '.join(f'`{name}`' for name in close)}?" if close else " See `/models`."
        raise InvalidInput(f"I don't know the model `{discord.utils.escape_markdown(model[:100])}`.{hint}")

    # --- mentions, replies, DMs ---------------------------------------------------------------------------

    def _addressed_to_me(self, message: discord.Message) -> bool:
        me = self.bot.user
        if me is None:
            return False
        if message.guild is None:
            return True
        if any(user.id == me.id for user in message.mentions):
            return True
        reference = message.reference
        if reference is not None:
            resolved = reference.resolved or reference.cached_message
            if isinstance(resolved, discord.Message) and resolved.author.id == me.id:
                return True
        return False

    def _strip_my_mention(self, content: str) -> str:
        me = self.bot.user
        if me is None:
            return content
        return self._mention.sub(lambda m: "" if int(m.group(1)) == me.id else m.group(0), content).strip()

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if (
            message.author.bot
            or message.webhook_id is not None
            or message.type not in (discord.MessageType.default, discord.MessageType.reply)
            or not self._addressed_to_me(message)
        ):
            return
        try:
            # The turn's place in line is taken here, before any await, so event order is answer order.
            reference = message.reference
            ticket = self.engine.enter(
                message.channel.id,
                message.author.id,
                question_ids=(message.id,),
                reply_to=reference.message_id if reference is not None else None,
            )
        except Exception as exc:
            await self._reply_text(message, explain(exc, where=f"Chat reply to message {message.id}"))
            return
        try:
            await self._answer_message(message, ticket)
        except Exception as exc:
            await self._reply_text(message, explain(exc, where=f"Chat reply to message {message.id}"))
        finally:
            self.engine.leave(ticket)

    @staticmethod
    def _may_reply_in(message: discord.Message) -> bool:
        """Whether the bot may post its reply here; if not, answering would only waste a provider call."""
        if message.guild is None:
            return True
        permissions = message.channel.permissions_for(message.guild.me)
        in_thread = isinstance(message.channel, discord.Thread)
        may_send = permissions.send_messages_in_threads if in_thread else permissions.send_messages
        return may_send and permissions.read_message_history  # a reply needs to see the message it quotes

    async def _answer_message(self, message: discord.Message, ticket: Ticket) -> None:
        if not self._may_reply_in(message):
            log.info(
                "Not answering message %s: no permission to reply in channel %s",
                message.id,
                message.channel.id,
            )
            return
        guild_id = message.guild.id if message.guild else None
        settings = await self.engine.channel_settings(
            guild_id, message.channel.id, parent_id(message.channel)
        )
        if not settings.answers_mentions:
            return  # chat is off or not chosen here: stay quiet rather than refuse every mention
        prompt = self._strip_my_mention(message.content)
        asked_image = await image_question(self.bot, message.attachments, guild_id)
        if not prompt and asked_image is None:
            if message.content or message.guild is None:
                await self._reply_text(
                    message, "Ask me something: mention me with a question, or use `/chat`."
                )
            return
        request = TurnRequest(
            channel_id=message.channel.id,
            guild_id=guild_id,
            parent_id=parent_id(message.channel),
            author=message.author,
            prompt=prompt,
            model=None,
            private=False,
            target=ChannelTarget(message.channel, message.channel.id, message),
            typing_channel=message.channel,
            user_message_ids=(message.id,),
            image=asked_image[0] if asked_image else None,
            vision_model=asked_image[1] if asked_image else None,
        )
        await self.engine.run(request, ticket, settings)

    async def _reply_text(self, message: discord.Message, text: str) -> None:
        async def send() -> None:
            await message.reply(text, mention_author=False, allowed_mentions=NO_PINGS)

        with contextlib.suppress(discord.HTTPException):
            await self.budget.write(message.channel.id, send, priority=Priority.FINAL)

    # --- /reset, /history, /models ---------------------------------------------------------------------

    @app_commands.command(name="reset", description="Make the bot forget this channel's conversation.")
    async def reset(self, interaction: discord.Interaction[Concord]) -> None:
        if interaction.channel_id is None:
            raise InvalidInput("There is no conversation here.")
        if interaction.guild_id is not None and not interaction.permissions.manage_messages:
            raise InvalidInput(
                "You need the Manage Messages permission to reset this channel's conversation."
            )
        dropped = await self.store.reset(interaction.channel_id)
        noun = "message" if dropped == 1 else "messages"
        await interaction.response.send_message(
            f"Conversation reset: I forgot {dropped} {noun} in this channel.", ephemeral=True
        )

    @app_commands.command(
        name="history", description="Show what the bot remembers of this channel's conversation."
    )
    @app_commands.describe(export="Also attach the whole stored conversation as a file")
    async def history(self, interaction: discord.Interaction[Concord], export: bool = False) -> None:
        channel = interaction.channel
        if channel is None or interaction.channel_id is None:
            raise InvalidInput("There is no conversation here.")
        settings = await self.engine.channel_settings(
            interaction.guild_id, interaction.channel_id, parent_id(channel)
        )
        probe = Turn(role="user", content="", author_name=interaction.user.display_name)
        room, unit = self.engine.history_room(self.engine.system_prompt(settings), probe)
        remembered = await self.store.recent(interaction.channel_id, room, unit)
        stored = await self.store.count(interaction.channel_id)
        lines = []
        for turn in remembered:
            who = clean_display_name(turn.author_name) if turn.role == "user" else "Concord"
            snippet = " ".join(turn.content.split())
            snippet = snippet if len(snippet) <= 150 else snippet[:149] + "…"
            flag = " *(cut off)*" if turn.incomplete else ""
            lines.append(
                f"**{discord.utils.escape_markdown(who)}**: {discord.utils.escape_markdown(snippet)}{flag}"
            )
        description = "\n".join(lines)
        while len(description) > 4000:
            lines.pop(0)
            description = "…\n" + "\n".join(lines)
        embed = result_embed(
            title="What I remember here",
            description=description or "Nothing yet: this channel's conversation is empty.",
            colour=discord.Colour.blurple(),
            footer=f"{len(remembered)} of {stored} stored messages fit the model's context "
            f"({self.settings.chat_history_budget} {unit}).",
        )
        kwargs: dict[str, Any] = {"embed": embed, "ephemeral": True}
        if export:
            title = f"Conversation in #{getattr(channel, 'name', None) or 'DM'}"
            kwargs["files"] = await export_files(
                self.store, interaction.channel_id, title=title, limit=interaction.filesize_limit
            )
        await interaction.response.send_message(**kwargs)

    @app_commands.command(
        name="models", description="List the chat models the configured AI providers offer."
    )
    async def models(self, interaction: discord.Interaction[Concord]) -> None:
        await interaction.response.defer(thinking=True, ephemeral=True)
        found = await self.bot.providers.list_models("chat")
        self.catalog.prime("chat", found)
        by_provider: dict[str, list[str]] = defaultdict(list)
        for info in found:
            by_provider[info.provider].append(info.id)
        default = self.settings.chat_default_model
        fields: list[tuple[str, str, bool]] = []
        for provider, names in list(by_provider.items())[:25]:
            value = ""
            for i, name in enumerate(sorted(names)):
                item = f"`{name}`"
                if len(value) + len(item) + 40 > 1024:
                    value += f" … and {len(names) - i} more"
                    break
                value += (", " if value else "") + item
            fields.append((f"{provider} ({len(names)})", value or "—", False))
        embed = result_embed(
            title="Chat models",
            description=f"Default: `{default}`" if default else "Default: each provider's own.",
            colour=discord.Colour.blurple(),
            fields=fields,
        )
        await interaction.followup.send(embed=embed, ephemeral=True)
