"""A plain discord.py AutoShardedBot with one command per interaction shape, used to exercise the emulator."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-3.5", "claude", "gemini"]


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    text: discord.ui.TextInput[FeedbackModal] = discord.ui.TextInput(
        label="Your feedback", custom_id="feedback_text"
    )
    mood: discord.ui.TextInput[FeedbackModal] = discord.ui.TextInput(
        label="Mood", custom_id="feedback_mood", required=False
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"thanks: {self.text.value} ({self.mood.value or 'no mood'})")


class VoteView(discord.ui.View):
    @discord.ui.button(label="Yes", custom_id="vote:yes", style=discord.ButtonStyle.success)
    async def yes(self, interaction: discord.Interaction, button: discord.ui.Button[VoteView]) -> None:
        await interaction.response.edit_message(content=f"voted yes by {interaction.user.name}", view=None)

    @discord.ui.button(label="Ask", custom_id="vote:ask")
    async def ask(self, interaction: discord.Interaction, button: discord.ui.Button[VoteView]) -> None:
        await interaction.response.send_modal(FeedbackModal())


config = app_commands.Group(name="config", description="Settings")


@config.command(name="show", description="Show a setting")
async def config_show(interaction: discord.Interaction, key: str) -> None:
    await interaction.response.send_message(f"{key} = default", ephemeral=True)


@config.command(name="set", description="Change a setting")
async def config_set(interaction: discord.Interaction, key: str, value: int) -> None:
    await interaction.response.send_message(f"{key} := {value}")


@app_commands.command(description="Managers only")
@app_commands.default_permissions(manage_guild=True)
async def admin(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("admin ok")


@app_commands.command(description="Is the bot alive?")
async def ping(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("pong")


@app_commands.command(description="Echo every option type")
async def echo(
    interaction: discord.Interaction,
    text: str,
    count: app_commands.Range[int, 1, 10],
    ratio: float,
    flag: bool,
    who: discord.Member,
    where: discord.TextChannel,
    role: discord.Role,
    thing: discord.Member | discord.Role,
    size: Literal["small", "large"] = "small",
    file: discord.Attachment | None = None,
) -> None:
    body = b""
    if file is not None:
        body = await file.read()
    perms = interaction.permissions
    await interaction.response.send_message(
        f"text={text} count={count} ratio={ratio} flag={flag} who={who.name} where={where.name} "
        f"role={role.name} thing={thing.name} size={size} file={file.filename if file else None}:{body!r} "
        f"admin={perms.administrator} manage={perms.manage_guild} ctx={interaction.context.guild}"
    )


@app_commands.command(description="Defers, then follows up")
async def slow(interaction: discord.Interaction, ephemeral: bool = False) -> None:
    await interaction.response.defer(thinking=True, ephemeral=ephemeral)
    await asyncio.sleep(0.05)
    await interaction.followup.send("first result")
    await interaction.followup.send("second result", file=discord.File(__file__, filename="probe.py"))
    await interaction.edit_original_response(content="first result (edited)")


@app_commands.command(description="Only you can see this")
async def secret(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("shh", ephemeral=True)


@app_commands.command(description="Opens a modal")
async def feedback(interaction: discord.Interaction) -> None:
    await interaction.response.send_modal(FeedbackModal())


@app_commands.command(description="A message with buttons")
async def vote(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("vote now", view=VoteView())


@app_commands.command(description="Chat with a model")
async def chat(interaction: discord.Interaction, model: str, prompt: str) -> None:
    await interaction.response.send_message(f"{model}: {prompt}")


@chat.autocomplete("model")
async def chat_model(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=m, value=m) for m in MODELS if current.lower() in m][:25]


@app_commands.command(description="Replies with a file in the initial response")
async def upload(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("here", file=discord.File(__file__, filename="probe.txt"))


@app_commands.command(description="Guild only")
@app_commands.guild_only()
async def where(interaction: discord.Interaction) -> None:
    await interaction.response.send_message(f"in {interaction.guild}")


class ProbeBot(commands.AutoShardedBot):
    """Records what it receives; commands are added in setup_hook like a real bot."""

    def __init__(self, *, message_content: bool = True) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        intents.members = True
        super().__init__(
            command_prefix="!",
            intents=intents,
            guild_ready_timeout=0.1,
            allowed_mentions=None,
        )
        self.received: list[discord.Message] = []
        self.message_event = asyncio.Event()

    async def setup_hook(self) -> None:
        commands_: list[app_commands.Command[Any, Any, Any]] = [
            admin,
            ping,
            echo,
            slow,
            secret,
            feedback,
            vote,
            chat,
            upload,
            where,
        ]
        for command in commands_:
            self.tree.add_command(command)
        self.tree.add_command(config)

    async def on_message(self, message: discord.Message) -> None:
        self.received.append(message)
        self.message_event.set()

    async def wait_for_received(self, count: int, timeout: float = 5.0) -> list[discord.Message]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.message_event.clear()
                await self.message_event.wait()
        return self.received
