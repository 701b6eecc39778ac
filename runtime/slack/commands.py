"""The command grammar of the Slack bot, shared by the slash command and by mentions of the bot.

    create <title> [severity=<level>] [service=<name>]...
    status <incident id>
    ack <incident id>
    resolve <incident id> [note]
    remediate <incident id>
    help

Words are separated by white space. In `create`, the `severity=` and
`service=` options may stand anywhere, and the remaining words form the title.
Slack text is user input: it is parsed here into plain values and never
compiled, and every piece of it that goes back into a reply passes through
`escape`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from compiler.expr import SEVERITY_LEVELS

COMMANDS = ("create", "status", "ack", "resolve", "remediate", "help")
# Column sizes of the `incidents` table: `title` is String(1000), `key` String(100).
MAX_TITLE = 1000
MAX_REFERENCE = 100

_USAGE = {
    "create": "create <title> [severity=<level>] [service=<name>]",
    "status": "status <incident id>",
    "ack": "ack <incident id>",
    "resolve": "resolve <incident id> [note]",
    "remediate": "remediate <incident id>",
    "help": "help",
}
_SUMMARY = {
    "create": "opens an incident",
    "status": "shows an incident",
    "ack": "acknowledges an incident",
    "resolve": "resolves an incident, with an optional note for the timeline",
    "remediate": "lists the runbooks for an incident",
    "help": "shows this list",
}
# A mention of the bot at the start of a message, with an optional label: `<@U0BOT0000>` or `<@U0BOT0000|bot>`.
_LEADING_MENTION = re.compile(r"\s*<@[A-Z0-9]+(?:\|[^>]*)?>")
_OPTION = re.compile(r"(severity|service)=(.*)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed command: `name` is one of `COMMANDS`, the other fields are those the command takes."""

    name: str
    incident: str | None = None
    title: str | None = None
    severity: str | None = None
    services: tuple[str, ...] = ()
    note: str | None = None


class CommandError(Exception):
    """Text that is not a command of the grammar; the message is mrkdwn, ready to send back."""


def parse_command(text: str) -> Command:
    """Parse the text of a slash command, or of a mention without the mention, into a `Command`.

    Empty text is `help`.

    Raises:
        CommandError: the first word is not a command, or the command's arguments do not fit its usage.
    """
    words = text.split()
    if not words:
        return Command("help")
    name = words[0].lower()
    arguments = words[1:]
    if name == "create":
        return _parse_create(arguments)
    if name in ("status", "ack", "remediate"):
        if len(arguments) != 1:
            raise CommandError(f"`{name}` takes exactly one incident id. Usage: `{_USAGE[name]}`")
        return Command(name, incident=_reference(name, arguments[0]))
    if name == "resolve":
        if not arguments:
            raise CommandError(f"`resolve` needs an incident id. Usage: `{_USAGE['resolve']}`")
        # The note keeps the spacing the person typed; only the verb and the id are split off.
        note = text.strip().split(None, 2)[2] if len(arguments) > 1 else None
        return Command("resolve", incident=_reference(name, arguments[0]), note=note)
    if name == "help":
        return Command("help")
    raise CommandError(f"Unknown command `{escape(_shorten(words[0], 40))}`.")


def _parse_create(arguments: list[str]) -> Command:
    severity: str | None = None
    services: list[str] = []
    title_words: list[str] = []
    for word in arguments:
        option = _OPTION.fullmatch(word)
        if option is None:
            title_words.append(word)
            continue
        key, value = option.group(1).lower(), option.group(2)
        if not value:
            raise CommandError(f"`{key}=` needs a value. Usage: `{_USAGE['create']}`")
        if key == "service":
            services.append(value)
        elif severity is not None:
            raise CommandError("`severity=` is given twice; give it once")
        elif value.lower() not in SEVERITY_LEVELS:
            levels = ", ".join(SEVERITY_LEVELS)
            raise CommandError(f"Unknown severity `{escape(_shorten(value, 40))}`; use one of {levels}.")
        else:
            severity = value.lower()
    title = " ".join(title_words)
    if not title:
        raise CommandError(f"`create` needs a title. Usage: `{_USAGE['create']}`")
    if len(title) > MAX_TITLE:
        raise CommandError(f"The title has {len(title)} characters; shorten it to at most {MAX_TITLE}.")
    return Command("create", title=title, severity=severity, services=tuple(services))


def _reference(name: str, word: str) -> str:
    if len(word) > MAX_REFERENCE:
        raise CommandError(f"`{name}` needs an incident id such as INC-42, not a word of {len(word)} characters.")
    return word


def help_text(slash_command: str) -> str:
    """Return the list of commands, as mrkdwn, for `slash_command` such as `/incident`."""
    lines = [f"Use `{slash_command} <command>` or mention the bot with a command:"]
    lines += [f"• `{_USAGE[name]}` {_SUMMARY[name]}" for name in COMMANDS]
    lines.append(f"Severity levels: {', '.join(SEVERITY_LEVELS)}.")
    return "\n".join(lines)


def mention_text(text: str) -> str:
    """Return the command in the text of an `app_mention` event: without the leading mention, with entities decoded.

    Slack writes `&`, `<` and `>` in message text as `&amp;`, `&lt;` and `&gt;`.
    Slash command text arrives without that encoding.
    """
    mention = _LEADING_MENTION.match(text)
    stripped = text[mention.end() :] if mention else text
    return stripped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    """Escape text for Slack's mrkdwn, so that it cannot form a link or a mention such as `<!channel>`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
