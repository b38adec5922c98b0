"""The chat turn engine: turn request → context → provider stream → live reply → store. No commands here."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord

from bot.discordkit.live_reply import LiveReply, ReplyTarget
from bot.errors import ConcordError, FeatureUnavailable, InvalidInput
from bot.providers.types import ChatChunk, ChatRequest, StreamEnd
from bot.services.conversations import BudgetUnit, Turn, build_context, clean_display_name
from bot.services.guild_config import ChannelChatSettings
from bot.services.quotas import Feature, Plan, Reservation
from bot.services.turn_gate import Ticket, TurnGate
from bot.services.vision import NO_VISION, ImageAttachment, check_image_attachment
from cogs.chat.views import RegenerateButton, StopButton, buttons

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)

NOT_LATEST = "Only the latest reply in this channel can be regenerated."
SHUTTING_DOWN = "I'm restarting right now; please ask again in a minute."
# How many recently finished generations (Stop) and private turns (Regenerate) the engine remembers.
RECENT_LIMIT = 1024
# The typing indicator starts only when the first message is not out this soon: it is for a slow answer.
# A turn's first milliseconds belong to its provider request, and in a busy moment (a burst of questions)
# an indicator for every answer only slows the answers down.
TYPING_AFTER = 0.2
SettingsKey = tuple[int | None, int, int | None]


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
    image: ImageAttachment | None = None
    """An image attached to the question: a vision model answers it (and VISION quota is charged)."""
    vision_model: str | None = None
    """The server's default vision model, for a question with an image."""

    @property
    def remembered_prompt(self) -> str:
        """The question as history keeps it: an attached image is noted by name."""
        if self.image is None:
            return self.prompt
        return f"{self.prompt}\n[attached image: {clean_display_name(self.image.filename)}]".strip()


@dataclass(eq=False)
class LiveTurn:
    """A reply being written: its Stop event, and why it was cut if it was."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: bool = False


def remember_recent(entries: dict[str, Any], key: str, value: Any) -> None:
    """Insert into a dict used as a bounded, oldest-first cache."""
    entries[key] = value
    while len(entries) > RECENT_LIMIT:
        del entries[next(iter(entries))]


def role_ids(user: discord.User | discord.Member) -> list[int]:
    return [role.id for role in getattr(user, "roles", [])]


def parent_id(channel: Any) -> int | None:
    """A thread's parent channel (a thread without its own settings uses its parent's); else None."""
    return getattr(channel, "parent_id", None) or None


def check_enabled(settings: ChannelChatSettings) -> None:
    refusal = settings.refusal()
    if refusal is not None:
        raise FeatureUnavailable(refusal)


async def image_question(
    bot: Concord, files: Sequence[discord.Attachment], guild_id: int | None
) -> tuple[ImageAttachment, str | None] | None:
    """The first image attached to a question, checked before any download, with the server's vision
    model; None when nothing attached is an image (text files are /chat's own business)."""
    file = next((f for f in files if (f.content_type or "").startswith("image/")), None)
    if file is None:
        return None
    if not bot.vision.available:
        raise FeatureUnavailable(NO_VISION)
    await bot.guild_config.ensure_enabled(guild_id, "vision")
    model = (await bot.guild_config.get(guild_id)).vision_model if guild_id is not None else None
    image = ImageAttachment(
        url=file.url, filename=file.filename, content_type=file.content_type, size=file.size
    )
    check_image_attachment(image, max_bytes=bot.vision.max_bytes)
    return image, model


def check_input(text: str, plan: Plan | None, settings: ChannelChatSettings) -> None:
    """Everything the model will read of the user's turn (attached file included) against the limits."""
    limits = [n for n in (plan.max_input_chars if plan else None, settings.max_input_chars) if n]
    if limits and len(text) > min(limits):
        raise InvalidInput(
            f"Your message is {len(text):,} characters; the limit here is {min(limits):,} characters."
        )


class TurnEngine:
    """Answers turns. Built by the Chat cog from the bot's shared services; holds the live replies' state
    (Stop events, recently finished keys, private turns) that the buttons act on."""

    def __init__(self, bot: Concord) -> None:
        self.bot = bot
        self.settings = bot.settings
        self.store = bot.conversations
        self.quotas = bot.quotas
        self.budget = bot.write_budget
        s = bot.settings
        self.gate = TurnGate(s.chat_max_concurrency, s.chat_busy_wait, s.chat_queue_limit)
        self._background: set[asyncio.Task[Any]] = set()
        # Keys are "<run>.<n>": `run` is random per engine, so a key on a message written before a restart
        # never names a generation or private turn of this run.
        self._run = secrets.token_hex(4)
        self._keys = itertools.count()
        self.live: dict[str, LiveTurn] = {}
        self.finished: dict[str, None] = {}
        self.private: dict[str, TurnRequest] = {}
        self.cutting = False
        self._settings_reads: dict[
            tuple[int | None, int, int | None], asyncio.Future[ChannelChatSettings]
        ] = {}
        """Shutdown's grace period is over: replies being written are cut, turns not started are refused."""

    # --- taking part in line ------------------------------------------------------------------------

    def enter(
        self,
        channel_id: int,
        author_id: int,
        *,
        question_ids: tuple[int, ...] = (),
        reply_to: int | None = None,
    ) -> Ticket:
        """Take the turn's place in its channel's line. Synchronous: call it before the first await."""
        if self.gate.closed:
            raise FeatureUnavailable(SHUTTING_DOWN)
        return self.gate.enter(channel_id, author_id, question_ids=question_ids, reply_to=reply_to)

    def leave(self, ticket: Ticket) -> None:
        self.gate.leave(ticket)

    async def channel_settings(
        self, guild_id: int | None, channel_id: int, parent_id: int | None
    ) -> ChannelChatSettings:
        """A channel's chat settings, read once for all the turns asking at the same moment: while one
        read is under way, the others share its answer (nothing is kept once it is done)."""
        key = (guild_id, channel_id, parent_id)
        reading = self._settings_reads.get(key)
        if reading is None:
            reading = asyncio.ensure_future(
                self.bot.guild_config.chat_settings(guild_id, channel_id, parent_id)
            )
            self._settings_reads[key] = reading
            reading.add_done_callback(lambda _: self._settings_reads.pop(key, None))
        return await asyncio.shield(reading)

    # --- a turn -------------------------------------------------------------------------------------

    async def run(self, request: TurnRequest, ticket: Ticket, settings: ChannelChatSettings) -> None:
        """Answer one prompt whose channel settings the caller resolved; `ticket` is left at the end."""
        first_shown = asyncio.Event()
        typing = self._start_typing(request.typing_channel, first_shown)
        try:
            await ticket.wait_to_store()  # questions are stored in question order
            check_enabled(settings)  # checked on the way in; Regenerate may come after a change
            model = request.model or settings.model or self.settings.chat_default_model
            quota = (
                contextlib.nullcontext(request.reservation)
                if request.reservation is not None
                else self.reserve_quota(
                    request.author, request.guild_id, model, image=request.image is not None
                )
            )
            stores_question = request.replaces is None and not request.private
            begun = self._begin(request, model) if stores_question else None
            ticket.stored.set()
            # The question's write, the quota and the history read run side by side: the provider request
            # waits for the slowest of them, not for their sum.
            history = asyncio.ensure_future(self._history(request, ticket, settings))
            try:
                async with quota as reservation:
                    if begun is not None:
                        ticket.row_ids = tuple(await begun)
                    check_input(request.prompt, reservation.plan, settings)
                    await self._answer(request, ticket, settings, model, reservation, first_shown, history)
            except BaseException:
                history.cancel()
                if history.done() and not history.cancelled():
                    history.exception()  # retrieved: the turn's own error is the one reported
                if begun is not None:
                    await self._forget_unanswered(ticket, begun)
                raise
        finally:
            first_shown.set()
            if typing is not None:
                typing.cancel()
            self.leave(ticket)

    def reserve_quota(
        self,
        user: discord.User | discord.Member,
        guild_id: int | None,
        model: str | None,
        *,
        image: bool = False,
    ) -> Reservation:
        """The one place chat charges quota: taken before the provider call, refunded if the call fails.
        Taking it resolves the caller's plan (`reservation.plan`), which the turn then uses throughout.
        A question about an image is a vision call; otherwise closed-source models (the providers' own
        patterns: defaults plus each provider's `closed_source`) have their stricter allowance."""
        providers = self.bot.providers
        if image:
            feature = Feature.VISION
        elif providers.is_closed_source(model or providers.default_chat_model() or ""):
            feature = Feature.CLOSED_LLM
        else:
            feature = Feature.LLM
        return self.quotas.reserve(user.id, feature, guild_id=guild_id, role_ids=role_ids(user))

    def history_room(self, system_prompt: str | None, prompt: Turn) -> tuple[int, BudgetUnit]:
        unit = self.settings.chat_history_unit
        probe = build_context(system_prompt, [], prompt)
        used = sum(Turn(role=m.role, content=str(m.content)).cost(unit) for m in probe.messages[:1])
        used += prompt.cost(unit)
        return max(self.settings.chat_history_budget - used, 0), unit

    def system_prompt(self, settings: ChannelChatSettings) -> str | None:
        return settings.system_prompt or self.settings.chat_system_prompt

    def max_tokens(self, plan: Plan | None) -> int:
        premium = plan is not None and plan.name != "free"
        return self.settings.chat_max_tokens_premium if premium else self.settings.chat_max_tokens_free

    async def _answer(
        self,
        request: TurnRequest,
        ticket: Ticket,
        settings: ChannelChatSettings,
        model: str | None,
        reservation: Reservation,
        first_shown: asyncio.Event,
        history_read: asyncio.Future[list[Turn]],
    ) -> None:
        prompt = self._prompt_turn(request)
        history = await history_read
        if ticket.row_ids:  # a later question answered before this one's history was read is not context
            history = [turn for turn in history if turn.id is None or turn.id < ticket.row_ids[0]]
        context = build_context(self.system_prompt(settings), history, prompt)
        chat_request = ChatRequest(
            messages=context.messages, model=model, max_tokens=self.max_tokens(reservation.plan)
        )
        key = self._new_key()
        self.live[key] = live = LiveTurn()
        if self.cutting:  # the grace period ended while this turn read its history
            live.interrupted = True
            live.stop.set()
        try:
            await self._write(request, ticket, model, chat_request, key, reservation, first_shown)
            remember_recent(self.finished, key, None)  # a failed reply keeps no key: Stop tidies it up
        finally:
            del self.live[key]

    @staticmethod
    def _prompt_turn(request: TurnRequest) -> Turn:
        return Turn(
            role="user",
            content=request.remembered_prompt,
            author_id=request.author.id,
            author_name=request.author.display_name,
            # The model the user asked for (None: the channel's default), so Regenerate asks the same way.
            model=request.model,
            message_ids=request.user_message_ids,
        )

    async def _history(
        self, request: TurnRequest, ticket: Ticket, settings: ChannelChatSettings
    ) -> list[Turn]:
        """The turn's context from the store, read once the turn it depends on (if any) has finished.
        Questions still being answered (their answers empty and unfinished, this one's included) are
        never part of it, so the read need not wait for this question's own write."""
        await ticket.wait_for_dependency()
        if self.cutting:  # shutting down past the grace period: a turn that has not started won't
            raise FeatureUnavailable(SHUTTING_DOWN)
        if request.replaces is not None and (
            await self.store.latest_id(request.channel_id) != request.replaces[1]
        ):
            # Checked again now that it is this turn's go: another turn may have finished meanwhile.
            raise InvalidInput(NOT_LATEST)
        room, unit = self.history_room(self.system_prompt(settings), self._prompt_turn(request))
        return await self.store.recent(
            request.channel_id,
            room,
            unit,
            before_id=request.before_id,
            exclude=self.gate.excluded_rows(request.channel_id),
        )

    def _begin(self, request: TurnRequest, model: str | None) -> asyncio.Future[list[int]]:
        """Store the question as it arrives (with an empty, unfinished answer); the write runs meanwhile."""
        return self.store.begin_turn(
            request.channel_id, request.guild_id, self._prompt_turn(request), model=model
        )

    async def _forget_unanswered(self, ticket: Ticket, begun: asyncio.Future[list[int]]) -> None:
        """A turn that failed before its answer was stored leaves no question without an answer behind."""
        if ticket.answered:
            return
        try:
            ids = ticket.row_ids or tuple(await asyncio.shield(begun))
        except Exception:
            return  # the question was never stored
        with contextlib.suppress(Exception):
            await asyncio.shield(self.store.drop_turn(ids))
        ticket.row_ids = ()

    def _start_typing(
        self, channel: discord.abc.Messageable | None, until: asyncio.Event
    ) -> asyncio.Task[None] | None:
        """Typing indicator in the background, so the provider call never waits for it."""
        if channel is None:
            return None

        async def keep_typing() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), TYPING_AFTER)
                return  # shown already
            with contextlib.suppress(discord.HTTPException):
                async with channel.typing():
                    await until.wait()

        return self.spawn(keep_typing())

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _new_key(self) -> str:
        return f"{self._run}.{next(self._keys)}"

    async def _write(
        self,
        request: TurnRequest,
        ticket: Ticket,
        model: str | None,
        chat_request: ChatRequest,
        key: str,
        reservation: Reservation,
        first_shown: asyncio.Event,
    ) -> None:
        """Stream the answer under a Stop button, remember the turn, then show it under Regenerate."""
        live = self.live[key]
        reply = LiveReply(
            request.target,
            self.budget,
            edit_interval=self.settings.chat_edit_interval,
            writing_view=buttons(StopButton(request.author.id, key)),
            not_before=ticket.previous.posted if ticket.previous is not None else None,
            max_pages=self.settings.chat_max_pages,
        )
        reply.start()
        shown_watch = self.spawn(self._relay_first_shown(reply, ticket, first_shown))
        try:
            async with self.gate.slot():  # the bot-wide cap covers the provider call only
                end, stopped = await self._stream(chat_request, reply, live.stop, request)
            reply.stream_ended()
            reservation.keep()
        except BaseException:
            await reply.abandon()
            raise
        finally:
            shown_watch.cancel()

        complete = end is not None and end.complete and not reply.overflowed
        incomplete = stopped or not complete
        text = reply.text if reply.overflowed or end is None or len(end.text) < len(reply.text) else end.text
        # Remember the turn before its final text shows, so a quick Regenerate, /history or follow-up sees
        # it. A first message still being sent usually lands within a few ms: its id is then stored in the
        # same write; a reply written whole before anything showed gets its message id stored after.
        await reply.sends_settled(0.05)
        stored_ids = self._message_ids(reply)
        reply_id: int | None = None
        if request.private:
            private_key = self._new_key()
            remember_recent(self.private, private_key, request)
            regenerate = RegenerateButton(request.author.id, private_key=private_key)
        else:
            reply_id = request.replaces[1] if request.replaces is not None else ticket.row_ids[1]
            await self.store.replace_reply(
                reply_id, content=text, model=model, incomplete=incomplete, message_ids=stored_ids
            )
            ticket.answered = True
            regenerate = RegenerateButton(request.author.id, reply_id=reply_id)
        await reply.finish(
            complete=complete,
            stopped=stopped and not live.interrupted,
            interrupted=live.interrupted,
            final_view=buttons(regenerate),
            text=text,
        )
        shown_ids = self._message_ids(reply)
        ticket.answer_ids.update(shown_ids)
        if reply_id is not None and shown_ids != stored_ids:
            # A page whose send was still in flight, or the one write of a reply written whole: record
            # its message id too.
            await self.store.replace_reply(
                reply_id, content=text, model=model, incomplete=incomplete, message_ids=shown_ids
            )

    @staticmethod
    def _message_ids(reply: LiveReply) -> list[int]:
        """The reply's Discord messages: those written, and a first one whose id is known beforehand."""
        ids = {i: int(handle.id) for i, handle in reply.handles.items()}
        if 0 not in ids and reply.target.first_message_id is not None:
            ids[0] = reply.target.first_message_id
        return [ids[i] for i in sorted(ids)]

    @staticmethod
    async def _relay_first_shown(reply: LiveReply, ticket: Ticket, first_shown: asyncio.Event) -> None:
        await reply.first_shown.wait()
        if 0 in reply.handles:
            ticket.answer_ids.add(int(reply.handles[0].id))
        ticket.posted.set()
        first_shown.set()

    async def _vision_answer(
        self, image: ImageAttachment, question: str, model: str | None
    ) -> AsyncGenerator[ChatChunk | StreamEnd, None]:
        """A vision model's answer about `image`, shaped as a one-chunk stream so it is shown, stored
        and buttoned like any reply."""
        result = await self.bot.vision.describe(image, question or None, model=model)
        yield ChatChunk(text=result.text, provider=result.provider)
        yield StreamEnd(complete=True, provider=result.provider, text=result.text)

    async def _stream(
        self, chat_request: ChatRequest, reply: LiveReply, stop: asyncio.Event, request: TurnRequest
    ) -> tuple[StreamEnd | None, bool]:
        """Feed the stream into the reply until it ends, the page cap is reached, or Stop is pressed."""
        providers = self.bot.providers
        got_text = False

        async def consume() -> StreamEnd | None:
            nonlocal got_text
            stream = (
                self._vision_answer(request.image, request.prompt, request.vision_model)
                if request.image is not None
                else providers.chat_stream(chat_request, quiet_for=reply.quiet_for)
            )
            async with aclosing(stream) as items:  # an async generator
                async for item in items:
                    if isinstance(item, StreamEnd):
                        reply.stream_ended()
                        return item
                    if item.text:
                        got_text = True
                        if not reply.append(item.text):
                            return None  # the page cap: stop reading a runaway reply
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

    # --- shutting down ------------------------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Take no new turns; give replies in flight `grace` seconds, then cut the rest as interrupted."""
        self.gate.closed = True
        waiting = [ticket.finished.wait() for ticket in self.gate.in_flight()]
        if waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waiting), grace)
        self.cutting = True
        for live in list(self.live.values()):
            live.interrupted = True
            live.stop.set()
        rest = [ticket.finished.wait() for ticket in self.gate.in_flight()]
        if rest:  # their final edits and stores go out now; bounded so a dead Discord cannot hang exit
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*rest), 10)

    async def close(self) -> None:
        background = list(self._background)
        for task in background:
            task.cancel()
        # Let them unwind (closing their database sessions) before the engine is disposed.
        await asyncio.gather(*background, return_exceptions=True)
