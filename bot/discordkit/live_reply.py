"""A reply that grows while a model writes: first message at the first tokens, paced edits, 2000-char pages.

Every send and edit goes through the bot's ChannelWriteBudget, so a streamed reply shares the channel's
write budget with everything else the bot posts there (a reply to an interaction goes to the interaction's
webhook, which Discord limits per interaction: it has a budget of its own). Interim edits are coalesced
and paced by `edit_interval`; the edits that finish the reply are FINAL and go out at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Hashable
from typing import Any, Protocol

import discord

from bot.discordkit.splitting import DISCORD_LIMIT, close_open_fence, split_message
from bot.discordkit.write_budget import ChannelWriteBudget, Priority

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
WRITING_MARKER = "\n-# ✍️ still writing…"
INCOMPLETE_NOTE = "\n\n-# ⚠️ This reply is incomplete: the AI service stopped before finishing it."
STOPPED_NOTE = "\n\n-# ⏹️ Stopped before the end."
INTERRUPTED_NOTE = (
    "\n\n-# ⚠️ This reply was cut off: it stopped being written (for example, the bot restarted)."
)
PAGE_CAP_NOTE = "\n\n-# ✂️ This reply reached its length limit ({pages} messages) and was cut there."
EMPTY_REPLY = "-# The model returned an empty answer."
# Room kept free on every page for the decorations above (and a fence closer), so pages stay <= 2000.
PAGE_LIMIT = DISCORD_LIMIT - 120

_tokens = itertools.count()


class ReplyTarget(Protocol):
    """Where a reply's pages go: a channel (mention, reply, DM) or an interaction's webhook."""

    channel_id: int
    first_message_id: int | None
    """The id the first page will have before it is written, when known (an interaction's deferred
    response is edited into it); None for a message not sent yet."""
    budget_key: int
    """The write budget its writes share: the channel's, or for an interaction its own webhook's (Discord
    limits an interaction's response and followups per interaction token, not per channel)."""

    async def send(self, content: str, view: discord.ui.View | None, *, first: bool) -> Any: ...

    async def edit(self, handle: Any, content: str, view: discord.ui.View | None) -> None: ...


class ChannelTarget:
    """Pages are channel messages; the first one replies to the user's message (without pinging)."""

    def __init__(self, channel: discord.abc.Messageable, channel_id: int, reference: discord.Message | None):
        self.channel = channel
        self.channel_id = channel_id
        self.first_message_id: int | None = None
        self.budget_key = channel_id
        self.reference = reference

    async def send(self, content: str, view: discord.ui.View | None, *, first: bool) -> discord.Message:
        kwargs: dict[str, Any] = {"allowed_mentions": NO_PINGS}
        if view is not None:
            kwargs["view"] = view
        if first and self.reference is not None:
            kwargs["reference"] = self.reference.to_reference(fail_if_not_exists=False)
            kwargs["mention_author"] = False
        return await self.channel.send(content, **kwargs)

    async def edit(self, handle: Any, content: str, view: discord.ui.View | None) -> None:
        await handle.edit(content=content, view=view, allowed_mentions=NO_PINGS)


class InteractionTarget:
    """Pages answer an interaction: the first edits the (deferred) original response, the rest follow up.

    With `first_is_original=False` (a button press answered by updating its own message) every page is a
    followup.
    """

    def __init__(
        self,
        interaction: discord.Interaction[Any],
        *,
        ephemeral: bool,
        first_is_original: bool = True,
        original_id: int | None = None,
    ) -> None:
        self.interaction = interaction
        self.channel_id = interaction.channel_id or 0
        self.first_message_id = original_id if first_is_original else None
        self.budget_key = interaction.id  # a snowflake of its own: never a channel's id
        self.ephemeral = ephemeral
        self.first_is_original = first_is_original

    async def send(self, content: str, view: discord.ui.View | None, *, first: bool) -> Any:
        if first and self.first_is_original:
            if view is not None:
                return await self.interaction.edit_original_response(
                    content=content, view=view, allowed_mentions=NO_PINGS
                )
            return await self.interaction.edit_original_response(content=content, allowed_mentions=NO_PINGS)
        kwargs: dict[str, Any] = {"allowed_mentions": NO_PINGS, "ephemeral": self.ephemeral, "wait": True}
        if view is not None:
            kwargs["view"] = view
        return await self.interaction.followup.send(content, **kwargs)

    async def edit(self, handle: Any, content: str, view: discord.ui.View | None) -> None:
        await handle.edit(content=content, view=view, allowed_mentions=NO_PINGS)


class LiveReply:
    """Feed it text with `append`, end it with `finish`; it keeps Discord's view of the reply in step."""

    def __init__(
        self,
        target: ReplyTarget,
        budget: ChannelWriteBudget,
        *,
        edit_interval: float = 1.0,
        writing_view: discord.ui.View | None = None,
        page_limit: int = PAGE_LIMIT,
        not_before: asyncio.Event | None = None,
        max_pages: int | None = None,
    ) -> None:
        self.target = target
        self.budget = budget
        self.edit_interval = edit_interval
        self.page_limit = page_limit
        self.writing_view = writing_view
        self.not_before = not_before
        """The first message waits for this (the previous turn's first message in the channel)."""
        self.max_pages = max_pages
        self.overflowed = False
        self.interrupted = False
        self.final_view: discord.ui.View | None = None
        self.text = ""
        self.finished = False
        self.ended = False
        """The model has stopped writing: no interim write goes out any more, `finish` writes the end."""
        self.complete = True
        self.stopped = False
        self.handles: dict[int, Any] = {}
        self.first_shown = asyncio.Event()
        self._token = next(_tokens)
        self._shown: dict[int, tuple[str, int]] = {}
        self._sends: dict[int, asyncio.Future[Any]] = {}
        self._sending: set[int] = set()
        self._edits: dict[int, asyncio.Future[Any]] = {}
        self._dirty = asyncio.Event()
        self._done = asyncio.Event()
        self._error: BaseException | None = None
        self._runner: asyncio.Task[None] | None = None
        self._next_schedule = 0.0
        """When the runner next hands the text to the write budget (loop time)."""

    # --- feeding ------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="live-reply")

    def append(self, delta: str) -> bool:
        """Add streamed text; False once the page cap is reached (the text is cut at the cap)."""
        if self.overflowed:
            return False
        if delta and not self.finished:
            self.text += delta
            self._dirty.set()
            if self.max_pages is not None and len(self.text) > self.max_pages * self.page_limit:
                self._cut_at_cap()
                return False
        return True

    def quiet_for(self) -> float:
        """Seconds before the text is next read for a write (0 while no message is out yet, or at the
        end): text that arrives sooner than this is shown no sooner, so its source may be read later."""
        if not self.handles or self.ended or self.finished:
            return 0.0
        slot = self.budget.progress_wait(self.target.budget_key, self._token)
        if any(not edit.done() for edit in self._edits.values()):
            return slot  # an edit is queued: it reads the text when its slot comes
        return max(self._next_schedule - asyncio.get_running_loop().time(), slot)

    def stream_ended(self) -> None:
        """No more text is coming. Writes not yet begun wait for `finish`, so a reply that was written
        faster than its first message could go out is shown with one write instead of two."""
        self.ended = True

    def _cut_at_cap(self) -> None:
        assert self.max_pages is not None
        self.overflowed = True
        self.text = self.text[: self.max_pages * self.page_limit]
        while len(split_message(self.text, self.page_limit)) > self.max_pages:
            self.text = self.text[: len(self.text) - self.page_limit // 4]

    async def finish(
        self,
        *,
        complete: bool = True,
        stopped: bool = False,
        interrupted: bool = False,
        final_view: discord.ui.View | None = None,
        text: str | None = None,
    ) -> list[Any]:
        """Show the final text (without the marker, with a note if cut off); returns the message handles."""
        if text is not None and len(text) >= len(self.text) and not self.overflowed:
            self.text = text
        self.complete = complete
        self.stopped = stopped
        self.interrupted = interrupted
        self.final_view = final_view
        self.finished = True
        self._dirty.set()
        self._done.set()
        self.start()
        assert self._runner is not None
        await self._runner
        if self._error is not None:
            raise self._error
        return [self.handles[i] for i in sorted(self.handles)]

    async def sends_settled(self, within: float) -> None:
        """Wait up to `within` seconds for page sends already under way, so their message ids are known."""
        waiting = [f for f in self._sends.values() if not f.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=within)

    async def abandon(self) -> None:
        """Stop rendering without a final write (the caller reports an error instead)."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for future in (*self._sends.values(), *self._edits.values()):
            future.cancel()

    # --- what Discord should show ------------------------------------------------------------------

    def pages(self) -> list[str]:
        pages = split_message(self.text, self.page_limit)
        if not pages and self.finished:
            pages = [EMPTY_REPLY]
        return pages

    def _desired(self, index: int, pages: list[str]) -> tuple[str, discord.ui.View | None]:
        page = pages[index].rstrip()
        if index < len(pages) - 1:
            return page, None
        if not self.finished:
            return close_open_fence(page) + WRITING_MARKER, self.writing_view
        if self.interrupted:
            page = close_open_fence(page) + INTERRUPTED_NOTE
        elif self.overflowed:
            page = close_open_fence(page) + PAGE_CAP_NOTE.format(pages=self.max_pages)
        elif self.stopped:
            page = close_open_fence(page) + STOPPED_NOTE
        elif not self.complete:
            page = close_open_fence(page) + INCOMPLETE_NOTE
        return page, self.final_view

    @staticmethod
    def _fingerprint(content: str, view: discord.ui.View | None) -> tuple[str, int]:
        return content, id(view) if view is not None else 0

    def _key(self, kind: str, index: int) -> Hashable:
        return (self._token, kind, index)

    # --- writing ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if self.not_before is not None:
                await self.not_before.wait()
            while True:
                await self._dirty.wait()
                self._dirty.clear()
                final = self.finished
                if self.ended and not final:
                    await self._done.wait()
                    continue
                self._schedule(final=final)
                if final:
                    break
                self._next_schedule = asyncio.get_running_loop().time() + self.edit_interval
                # Pace interim edits; the end of the stream cuts the pause short.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done.wait(), self.edit_interval)
            await self._settle()
        except Exception as exc:
            self._error = exc

    def _schedule(self, *, final: bool) -> None:
        pages = self.pages()
        for index in range(len(pages)):
            if index in self.handles:
                content, view = self._desired(index, pages)
                if self._shown.get(index) != self._fingerprint(content, view):
                    self._submit_edit(index, Priority.FINAL if final else Priority.PROGRESS)
                continue
            send = self._sends.get(index)
            if send is not None and send.done() and send.exception() is not None:
                raise send.exception()  # type: ignore[misc]
            if send is None or (final and index not in self._sending):
                # Resubmitting a queued send under its key only raises its priority (no second message).
                self._submit_send(index, Priority.FINAL if final else Priority.NORMAL)

    def _submit_send(self, index: int, priority: Priority) -> None:
        async def op() -> Any:
            self._sending.add(index)
            pages = self.pages()
            content, view = self._desired(index, pages)
            handle = await self.target.send(content, view, first=index == 0)
            self.handles[index] = handle
            self._shown[index] = self._fingerprint(content, view)
            self.first_shown.set()
            return handle

        self._sends[index] = self.budget.submit(
            self.target.budget_key, op, priority=priority, key=self._key("send", index), owner=self._token
        )

    def _submit_edit(self, index: int, priority: Priority) -> None:
        async def op() -> None:
            pages = self.pages()
            content, view = self._desired(index, pages)
            fingerprint = self._fingerprint(content, view)
            if self._shown.get(index) == fingerprint:
                return
            await self.target.edit(self.handles[index], content, view)
            self._shown[index] = fingerprint

        self._edits[index] = self.budget.submit(
            self.target.budget_key, op, priority=priority, key=self._key("edit", index), owner=self._token
        )

    async def _settle(self) -> None:
        """Wait for the final writes; a page whose send raced with the end gets one more edit."""
        for _ in range(4):
            waiting = [f for f in (*self._sends.values(), *self._edits.values()) if not f.done()]
            if waiting:
                await asyncio.gather(*waiting, return_exceptions=True)
            failed = [
                f.exception() for f in self._sends.values() if not f.cancelled() and f.exception() is not None
            ]
            if failed:
                raise failed[0]  # type: ignore[misc]
            pages = self.pages()
            if all(
                self._shown.get(i) == self._fingerprint(*self._desired(i, pages)) for i in range(len(pages))
            ):
                return
            self._schedule(final=True)
        log.warning("A streamed reply did not settle after several final writes")
