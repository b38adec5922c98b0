"""The Chat cog: /chat, mentions, replies and DMs get a streamed reply; /reset, /history and /models."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
import re
import secrets
from collections import defaultdict
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discordkit.embeds import result_embed
from bot.discordkit.live_reply import (
    INTERRUPTED_NOTE,
    NO_PINGS,
    WRITING_MARKER,
    ChannelTarget,
    InteractionTarget,
    LiveReply,
    ReplyTarget,
)
from bot.discordkit.tree import explain
from bot.discordkit.write_budget import Priority
from bot.errors import ConcordError, FeatureUnavailable, InvalidInput
from bot.providers.types import ChatRequest, StreamEnd
from bot.services.conversations import (
    BudgetUnit,
    Turn,
    build_context,
    clean_display_name,
    render_transcript,
)
from bot.services.guild_config import ChannelChatSettings
from bot.services.quotas import Reservation, chat_feature_for
from bot.services.turn_gate import TurnGate
from cogs.chat.views import RegenerateButton, StopButton, buttons

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)

TEXT_EXTENSIONS = frozenset(
    {
        *("txt", "md", "markdown", "csv", "tsv", "json", "jsonl", "yaml", "yml", "toml", "ini", "cfg", "log"),
        *(
            "py",
            "js",
            "ts",
            "tsx",
            "jsx",
            "java",
            "c",
            "h",
            "cpp",
            "hpp",
            "cs",
            "go",
            "rs",
            "rb",
            "php",
            "sh",
        ),
        *("bash", "zsh", "ps1", "sql", "html", "htm", "css", "xml", "kt", "swift", "lua", "r", "tex", "rst"),
    }
)


@dataclass(frozen=True)
class TurnRequest:
    """One prompt to answer, however it arrived (slash command, mention, reply, DM, Regenerate)."""

    channel_id: int
    guild_id: int | None
    parent_id: int | None
    """A thread's parent channel, whose chat settings the thread inherits."""
    author: discord.User | discord.Member
    prompt: str
    model: str | None
    private: bool
    target: ReplyTarget
    typing_channel: discord.abc.Messageable | None = None
    user_message_ids: tuple[int, ...] = ()
    before_id: int | None = None
    """Regenerate: history older than the regenerated prompt only."""
    replaces: tuple[int, int] | None = None
    """Regenerate: (prompt id, reply id) of the stored turn being redone."""
    reservation: Reservation | None = None
    """Quota already taken by the caller (/chat takes it before deferring, so a denial stays private)."""


ALREADY_FINISHED = "That reply is already finished, so there is nothing to stop."
FORGOTTEN = "I no longer remember that reply (this conversation was reset), so it can't be regenerated."
NOT_LATEST = "Only the latest reply in this channel can be regenerated."
PRIVATE_FORGOTTEN = (
    "Private replies aren't saved, and I no longer remember this one, so it can't be regenerated."
)
# How many recently finished generations (Stop) and private turns (Regenerate) the cog remembers.
RECENT_LIMIT = 1024


def _remember_recent(entries: dict[str, Any], key: str, value: Any) -> None:
    """Insert into a dict used as a bounded, oldest-first cache."""
    entries[key] = value
    while len(entries) > RECENT_LIMIT:
        del entries[next(iter(entries))]


def _role_ids(user: discord.User | discord.Member) -> list[int]:
    return [role.id for role in getattr(user, "roles", [])]


def _parent_id(channel: Any) -> int | None:
    """A thread's parent channel (a thread without its own settings uses its parent's); else None."""
    return getattr(channel, "parent_id", None) or None


class Chat(commands.Cog, name="Chat"):
    """Conversations with the AI, remembered per channel."""

    def __init__(self, bot: Concord) -> None:
        self.bot = bot
        settings = bot.settings
        self.settings = settings
        self.store = bot.conversations
        self.guild_config = bot.guild_config
        self.quotas = bot.quotas
        self.budget = bot.write_budget
        self.gate = TurnGate(settings.chat_max_concurrency, settings.chat_busy_wait)
        self.catalog = bot.catalog
        self._mention = re.compile(r"<@!?(\d+)>")
        self._background: set[asyncio.Task[Any]] = set()
        # Button state. Keys are "<run>.<n>": `run` is random per cog instance, so a key on a message
        # written before a restart never names a generation or private turn of this run.
        self._run = secrets.token_hex(4)
        self._keys = itertools.count()
        self._live: dict[str, asyncio.Event] = {}
        """Stop events of the replies being written, by key."""
        self._finished: dict[str, None] = {}
        """Keys of replies finished lately in this run: a late Stop press must not strip their buttons."""
        self._private: dict[str, TurnRequest] = {}
        """Private turns (never stored) that Regenerate can redo, while this run remembers them."""
        self._regenerating: set[str] = set()

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(StopButton, RegenerateButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(StopButton, RegenerateButton)
        background = list(self._background)
        for task in background:
            task.cancel()
        # Let them unwind (closing their database sessions) before the engine is disposed.
        await asyncio.gather(*background, return_exceptions=True)

    # --- checks ---------------------------------------------------------------------------------------

    async def _channel_settings(self, guild_id: int | None, channel: Any) -> ChannelChatSettings:
        return await self.guild_config.chat_settings(guild_id, channel.id, _parent_id(channel))

    @staticmethod
    def _check_enabled(settings: ChannelChatSettings) -> None:
        refusal = settings.refusal()
        if refusal is not None:
            raise FeatureUnavailable(refusal)

    async def _check_input(
        self,
        user: discord.User | discord.Member,
        guild_id: int | None,
        text: str,
        settings: ChannelChatSettings,
    ) -> None:
        plan = await self.quotas.plan_for(guild_id, _role_ids(user))
        limits = [n for n in (plan.max_input_chars, settings.max_input_chars) if n]
        if limits and len(text) > min(limits):
            raise InvalidInput(
                f"Your message is {len(text):,} characters; the limit here is {min(limits):,} characters."
            )

    def _reserve_quota(
        self, user: discord.User | discord.Member, guild_id: int | None, model: str | None
    ) -> Reservation:
        """The one place chat charges quota: taken before the provider call, refunded if the call fails."""
        feature = chat_feature_for(model or "")
        return self.quotas.reserve(user.id, feature, guild_id=guild_id, role_ids=_role_ids(user))

    def _history_room(self, system_prompt: str | None, prompt: Turn) -> tuple[int, BudgetUnit]:
        unit = self.settings.chat_history_unit
        probe = build_context(system_prompt, [], prompt)
        used = sum(Turn(role=m.role, content=str(m.content)).cost(unit) for m in probe.messages[:1])
        used += prompt.cost(unit)
        return max(self.settings.chat_history_budget - used, 0), unit

    def _system_prompt(self, settings: ChannelChatSettings) -> str | None:
        return settings.system_prompt or self.settings.chat_system_prompt

    # --- a turn ----------------------------------------------------------------------------------------

    async def run_turn(self, request: TurnRequest) -> None:
        """Answer one prompt: wait for the channel's turn and a global slot, stream, then remember."""
        settings = await self.guild_config.chat_settings(
            request.guild_id, request.channel_id, request.parent_id
        )
        self._check_enabled(settings)  # already checked on the way in; Regenerate may come after a change
        model = request.model or settings.model or self.settings.chat_default_model
        async with self.gate.turn(request.channel_id):
            if request.replaces is not None and (
                await self.store.latest_id(request.channel_id) != request.replaces[1]
            ):
                # Checked again now that it is this turn's go: another turn may have finished meanwhile.
                raise InvalidInput(NOT_LATEST)
            first_shown = asyncio.Event()
            typing = self._start_typing(request.typing_channel, first_shown)
            try:
                await self._answer(request, settings, model, first_shown)
            finally:
                first_shown.set()
                if typing is not None:
                    typing.cancel()

    def _start_typing(
        self, channel: discord.abc.Messageable | None, until: asyncio.Event
    ) -> asyncio.Task[None] | None:
        """Typing indicator in the background, so the provider call never waits for it."""
        if channel is None:
            return None

        async def keep_typing() -> None:
            with contextlib.suppress(discord.HTTPException):
                async with channel.typing():
                    await until.wait()

        return self._spawn(keep_typing())

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _answer(
        self,
        request: TurnRequest,
        settings: ChannelChatSettings,
        model: str | None,
        first_shown: asyncio.Event,
    ) -> None:
        author = request.author
        prompt = Turn(
            role="user",
            content=request.prompt,
            author_id=author.id,
            author_name=author.display_name,
            # The model the user asked for (None: the channel's default), so Regenerate asks the same way.
            model=request.model,
            message_ids=request.user_message_ids,
        )
        system_prompt = self._system_prompt(settings)
        room, unit = self._history_room(system_prompt, prompt)
        history = await self.store.recent(request.channel_id, room, unit, before_id=request.before_id)
        context = build_context(system_prompt, history, prompt)
        chat_request = ChatRequest(messages=context.messages, model=model)

        key = self._new_key()
        self._live[key] = asyncio.Event()
        try:
            await self._write(request, model, chat_request, prompt, key, first_shown)
            _remember_recent(self._finished, key, None)  # a failed reply keeps no key: Stop tidies it up
        finally:
            del self._live[key]

    def _new_key(self) -> str:
        return f"{self._run}.{next(self._keys)}"

    async def _write(
        self,
        request: TurnRequest,
        model: str | None,
        chat_request: ChatRequest,
        prompt: Turn,
        key: str,
        first_shown: asyncio.Event,
    ) -> None:
        """Stream the answer under a Stop button, remember the turn, then show it under Regenerate."""
        reply = LiveReply(
            request.target,
            self.budget,
            edit_interval=self.settings.chat_edit_interval,
            writing_view=buttons(StopButton(request.author.id, key)),
        )
        reply.start()
        shown_watch = self._spawn(self._relay_first_shown(reply, first_shown))
        quota = (
            contextlib.nullcontext(request.reservation)
            if request.reservation is not None
            else self._reserve_quota(request.author, request.guild_id, model)
        )
        try:
            async with quota as reservation:
                end, stopped = await self._stream(chat_request, reply, self._live[key])
                reservation.keep()
        except BaseException:
            await reply.abandon()
            raise
        finally:
            shown_watch.cancel()

        complete = end is not None and end.complete
        incomplete = stopped or not complete
        text = end.text if end is not None and len(end.text) >= len(reply.text) else reply.text
        # Remember the turn before its final text shows, so a quick Regenerate or /history sees it.
        answer = Turn(role="assistant", content=text, model=model, incomplete=incomplete)
        stored_ids = self._message_ids(reply)
        turn_ids: tuple[int, int] | None = None
        if request.private:
            private_key = self._new_key()
            _remember_recent(self._private, private_key, request)
            regenerate = RegenerateButton(request.author.id, private_key=private_key)
        else:
            turn_ids = await self._remember(request, prompt, answer, stored_ids)
            regenerate = RegenerateButton(request.author.id, reply_id=turn_ids[1])
        await reply.finish(complete=complete, stopped=stopped, final_view=buttons(regenerate), text=text)
        shown_ids = self._message_ids(reply)
        if turn_ids is not None and shown_ids != stored_ids:
            await self.store.replace_reply(
                turn_ids[1],
                content=text,
                model=model,
                incomplete=incomplete,
                message_ids=shown_ids,
            )

    @staticmethod
    def _message_ids(reply: LiveReply) -> list[int]:
        return [int(reply.handles[i].id) for i in sorted(reply.handles)]

    async def _remember(
        self, request: TurnRequest, prompt: Turn, answer: Turn, message_ids: list[int]
    ) -> tuple[int, int]:
        answer = replace(answer, message_ids=tuple(message_ids))
        if request.replaces is not None:
            await self.store.replace_reply(
                request.replaces[1],
                content=answer.content,
                model=answer.model,
                incomplete=answer.incomplete,
                message_ids=message_ids,
            )
            return request.replaces
        ids = await self.store.append(request.channel_id, request.guild_id, [prompt, answer])
        return ids[0], ids[1]

    @staticmethod
    async def _relay_first_shown(reply: LiveReply, first_shown: asyncio.Event) -> None:
        await reply.first_shown.wait()
        first_shown.set()

    async def _stream(
        self, chat_request: ChatRequest, reply: LiveReply, stop: asyncio.Event
    ) -> tuple[StreamEnd | None, bool]:
        """Feed the stream into the reply until it ends or the requester presses Stop."""
        assert self.bot.providers is not None
        providers = self.bot.providers
        got_text = False

        async def consume() -> StreamEnd | None:
            nonlocal got_text
            stream = providers.chat_stream(chat_request)
            async with aclosing(stream) as items:
                async for item in items:
                    if isinstance(item, StreamEnd):
                        return item
                    if item.text:
                        got_text = True
                        reply.append(item.text)
            return None

        consumer = asyncio.ensure_future(consume())
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({consumer, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
        if consumer.done():
            try:
                return consumer.result(), False
            except ConcordError:
                raise
            except Exception:
                if not got_text:
                    raise
                log.exception("A chat stream failed after text arrived; showing it as cut off")
                return StreamEnd(complete=False, provider="?", text=reply.text, reason="error"), False
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await consumer
        return None, True

    # --- the buttons -----------------------------------------------------------------------------------

    async def stop_pressed(self, interaction: discord.Interaction[Any], button: StopButton) -> None:
        """Stop the generation the button names; if it is gone, say the reply is finished."""
        stop = self._live.get(button.key)
        if stop is not None:
            stop.set()
            # Deferred update: the reply's final edit (a few hundred ms later) swaps the buttons.
            await interaction.response.defer()
            return
        if button.key in self._finished:
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
            request = self._private.get(button.private_key or "")
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
            parent_id=_parent_id(channel),
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
            button.disable()
            await interaction.response.edit_message(view=button.view)
            again = replace(
                request,
                target=InteractionTarget(interaction, ephemeral=request.private, first_is_original=False),
                typing_channel=None if request.private else request.typing_channel,
                reservation=None,  # a new answer takes quota again (refunded if it fails)
            )
            await self.run_turn(again)
        finally:
            self._regenerating.discard(button.custom_id)

    @staticmethod
    async def _retire(interaction: discord.Interaction[Any], button: RegenerateButton, why: str) -> None:
        """Disable a Regenerate button that can no longer work, and say why in one private sentence."""
        button.disable()
        await interaction.response.edit_message(view=button.view)
        await interaction.followup.send(why, ephemeral=True)

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
        settings = await self._channel_settings(interaction.guild_id, channel)
        self._check_enabled(settings)
        await self._check_input(interaction.user, interaction.guild_id, prompt, settings)
        if file is not None:
            self._check_attachment(file)
        # Quota before the defer: a denial is then the interaction's first (ephemeral) response.
        quota_model = model or settings.model or self.settings.chat_default_model
        async with self._reserve_quota(interaction.user, interaction.guild_id, quota_model) as reservation:
            await interaction.response.defer(thinking=True, ephemeral=private)
            text = prompt
            if file is not None:
                text += await self._read_attachment(file)
            await self.run_turn(
                TurnRequest(
                    channel_id=interaction.channel_id,
                    guild_id=interaction.guild_id,
                    parent_id=_parent_id(channel),
                    author=interaction.user,
                    prompt=text,
                    model=model,
                    private=private,
                    target=InteractionTarget(interaction, ephemeral=private),
                    reservation=reservation,
                )
            )

    def _check_attachment(self, file: discord.Attachment) -> None:
        cap = self.settings.chat_attachment_max_bytes
        if file.size > cap:
            raise InvalidInput(f"That file is {file.size:,} bytes; the limit is {cap:,} bytes.")
        extension = file.filename.rsplit(".", 1)[-1].lower() if "." in file.filename else ""
        content_type = (file.content_type or "").split(";")[0].strip()
        if not (
            content_type.startswith("text/") or content_type.endswith("json") or extension in TEXT_EXTENSIONS
        ):
            raise InvalidInput("Only text files can be attached to /chat.")

    async def _read_attachment(self, file: discord.Attachment) -> str:
        data = await file.read()
        if len(data) > self.settings.chat_attachment_max_bytes:
            raise InvalidInput(f"That file is larger than {self.settings.chat_attachment_max_bytes:,} bytes.")
        try:
            body = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("That file isn't UTF-8 text.") from None
        name = clean_display_name(file.filename)
        return f"\n\n[attached file: {name}]\n```\n{body.replace('```', '`‍``')}\n```"

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
            or message.type
            not in (
                discord.MessageType.default,
                discord.MessageType.reply,
            )
        ):
            return
        if not self._addressed_to_me(message):
            return
        try:
            await self._answer_message(message)
        except Exception as exc:
            await self._reply_text(message, explain(exc, where=f"Chat reply to message {message.id}"))

    @staticmethod
    def _may_reply_in(message: discord.Message) -> bool:
        """Whether the bot may post its reply here; if not, answering would only waste a provider call."""
        if message.guild is None:
            return True
        permissions = message.channel.permissions_for(message.guild.me)
        in_thread = isinstance(message.channel, discord.Thread)
        may_send = permissions.send_messages_in_threads if in_thread else permissions.send_messages
        return may_send and permissions.read_message_history  # a reply needs to see the message it quotes

    async def _answer_message(self, message: discord.Message) -> None:
        if not self._may_reply_in(message):
            log.info(
                "Not answering message %s: no permission to reply in channel %s",
                message.id,
                message.channel.id,
            )
            return
        guild_id = message.guild.id if message.guild else None
        settings = await self._channel_settings(guild_id, message.channel)
        if not settings.answers_mentions:
            return  # chat is off or not chosen here: stay quiet rather than refuse every mention
        prompt = self._strip_my_mention(message.content)
        if not prompt:
            if message.content or message.guild is None:
                await self._reply_text(
                    message, "Ask me something: mention me with a question, or use `/chat`."
                )
            return
        await self._check_input(message.author, guild_id, prompt, settings)
        await self.run_turn(
            TurnRequest(
                channel_id=message.channel.id,
                guild_id=guild_id,
                parent_id=_parent_id(message.channel),
                author=message.author,
                prompt=prompt,
                model=None,
                private=False,
                target=ChannelTarget(message.channel, message.channel.id, message),
                typing_channel=message.channel,
                user_message_ids=(message.id,),
            )
        )

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
        settings = await self._channel_settings(interaction.guild_id, channel)
        probe = Turn(role="user", content="", author_name=interaction.user.display_name)
        room, unit = self._history_room(self._system_prompt(settings), probe)
        remembered = await self.store.recent(interaction.channel_id, room, unit)
        everything = await self.store.all_turns(interaction.channel_id)
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
            footer=f"{len(remembered)} of {len(everything)} stored messages fit the model's context "
            f"({self.settings.chat_history_budget} {unit}).",
        )
        kwargs: dict[str, Any] = {"embed": embed, "ephemeral": True}
        if export:
            title = f"Conversation in #{getattr(channel, 'name', None) or 'DM'}"
            data = render_transcript(everything, title=title).encode()
            kwargs["file"] = discord.File(
                io.BytesIO(data), filename=f"conversation-{interaction.channel_id}.md"
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
