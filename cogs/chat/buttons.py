"""What Stop and Regenerate do when pressed: stop a live reply, or ask a stored or private turn again."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import discord

from bot.discordkit.live_reply import INTERRUPTED_NOTE, WRITING_MARKER, InteractionTarget
from cogs.chat.engine import NOT_LATEST, TurnEngine, TurnRequest, parent_id
from cogs.chat.views import RegenerateButton, StopButton

if TYPE_CHECKING:
    from bot.app import Concord

ALREADY_FINISHED = "That reply is already finished, so there is nothing to stop."
FORGOTTEN = "I no longer remember that reply (this conversation was reset), so it can't be regenerated."

PRIVATE_FORGOTTEN = (
    "Private replies aren't saved, and I no longer remember this one, so it can't be regenerated."
)


class ButtonHandler:
    """The Chat cog hands button presses here; the state they act on lives in the turn engine."""

    def __init__(self, bot: Concord, engine: TurnEngine) -> None:
        self.bot = bot
        self.engine = engine
        self.store = bot.conversations
        self._regenerating: set[str] = set()

    async def stop_pressed(self, interaction: discord.Interaction[Any], button: StopButton) -> None:
        """Stop the generation the button names; if it is gone, say the reply is finished."""
        live = self.engine.live.get(button.key)
        if live is not None:
            live.stop.set()
            # Deferred update: the reply's final edit (a few hundred ms later) swaps the buttons.
            await interaction.response.defer()
            return
        if button.key in self.engine.finished:
            # Finished a moment ago: its final edit has put (or is putting) Regenerate in Stop's place.
            await interaction.response.send_message(ALREADY_FINISHED, ephemeral=True)
            return
        # Nobody is writing this reply any more (the bot restarted, or it failed): clear the stale button
        # and the "still writing" marker with the interaction's own response, then say so privately.
        content = interaction.message.content if interaction.message is not None else ""
        if content.endswith(WRITING_MARKER):
            await interaction.response.edit_message(
                content=content.removesuffix(WRITING_MARKER) + INTERRUPTED_NOTE, view=None
            )
        else:
            await interaction.response.edit_message(view=None)
        await interaction.followup.send(ALREADY_FINISHED, ephemeral=True)

    async def regenerate_pressed(
        self, interaction: discord.Interaction[Any], button: RegenerateButton
    ) -> None:
        """Answer the turn the button names again: a stored turn from the database, a private one from
        memory. Either way the same request goes through `_regenerate`."""
        if button.reply_id is not None:
            request = await self._stored_request(interaction, button.reply_id)
            if request is None:
                return await self._retire(interaction, button, FORGOTTEN)
            if await self.store.latest_id(request.channel_id) != button.reply_id:
                return await self._retire(interaction, button, NOT_LATEST)
        else:
            request = self.engine.private.get(button.private_key or "")
            if request is None:
                return await self._retire(interaction, button, PRIVATE_FORGOTTEN)
        await self._regenerate(interaction, button, request)

    async def _stored_request(
        self, interaction: discord.Interaction[Any], reply_id: int
    ) -> TurnRequest | None:
        """The request that asks a stored turn's prompt again, with the history that preceded it."""
        stored = await self.store.stored_turn(reply_id)
        if stored is None or stored.channel_id != interaction.channel_id:
            return None
        prompt = stored.prompt
        channel = interaction.channel
        assert prompt.id is not None and stored.reply.id is not None
        return TurnRequest(
            channel_id=stored.channel_id,
            guild_id=interaction.guild_id,
            parent_id=parent_id(channel),
            author=interaction.user,
            prompt=prompt.content,
            model=prompt.model,
            private=False,
            target=InteractionTarget(interaction, ephemeral=False, first_is_original=False),
            # A prompt written as a message (mention, reply, DM) was answered with a typing indicator.
            typing_channel=channel
            if prompt.message_ids and isinstance(channel, discord.abc.Messageable)
            else None,
            user_message_ids=prompt.message_ids,
            before_id=prompt.id,
            replaces=(prompt.id, stored.reply.id),
        )

    async def _regenerate(
        self, interaction: discord.Interaction[Any], button: RegenerateButton, request: TurnRequest
    ) -> None:
        """Disable the pressed button (in the interaction's own response), then answer again in followups."""
        if button.custom_id in self._regenerating:
            await interaction.response.send_message(
                "That reply is already being regenerated.", ephemeral=True
            )
            return
        self._regenerating.add(button.custom_id)
        try:
            ticket = self.engine.enter(request.channel_id, request.author.id)
            try:
                button.disable()
                await interaction.response.edit_message(view=button.view)
                settings = await self.engine.channel_settings(
                    request.guild_id, request.channel_id, request.parent_id
                )
            except BaseException:
                self.engine.leave(ticket)
                raise
            again = replace(
                request,
                target=InteractionTarget(interaction, ephemeral=request.private, first_is_original=False),
                typing_channel=None if request.private else request.typing_channel,
                reservation=None,  # a new answer takes quota again (refunded if it fails)
            )
            await self.engine.run(again, ticket, settings)
        finally:
            self._regenerating.discard(button.custom_id)

    @staticmethod
    async def _retire(interaction: discord.Interaction[Any], button: RegenerateButton, why: str) -> None:
        """Disable a Regenerate button that can no longer work, and say why in one private sentence."""
        button.disable()
        await interaction.response.edit_message(view=button.view)
        await interaction.followup.send(why, ephemeral=True)
