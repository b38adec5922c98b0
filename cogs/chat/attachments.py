"""Reading a /chat attachment: only text files, within the size cap, decoded as UTF-8 and fenced."""

from __future__ import annotations

import discord

from bot.errors import InvalidInput
from bot.services.conversations import clean_display_name
from bot.services.fetcher import GuardedFetcher

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


def check_attachment(file: discord.Attachment, max_bytes: int) -> None:
    """Refuse before downloading: too large, or not a text file."""
    if file.size > max_bytes:
        raise InvalidInput(f"That file is {file.size:,} bytes; the limit is {max_bytes:,} bytes.")
    extension = file.filename.rsplit(".", 1)[-1].lower() if "." in file.filename else ""
    content_type = (file.content_type or "").split(";")[0].strip()
    if not (
        content_type.startswith("text/") or content_type.endswith("json") or extension in TEXT_EXTENSIONS
    ):
        raise InvalidInput("Only text files can be attached to /chat.")


async def read_attachment(file: discord.Attachment, max_bytes: int, fetcher: GuardedFetcher) -> str:
    """The file as a fenced block to append to the prompt (it counts toward the input limit).

    Downloaded through the guarded fetcher like every URL the bot fetches: the size is capped while
    reading and the bytes must be UTF-8 text whatever the declared type says.
    """
    fetched = await fetcher.fetch(file.url, max_bytes=max_bytes, expect="text", filename=file.filename)
    try:
        body = fetched.data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("That file isn't UTF-8 text.") from None
    name = clean_display_name(file.filename)
    return f"\n\n[attached file: {name}]\n```\n{body.replace('```', '`‍``')}\n```"
