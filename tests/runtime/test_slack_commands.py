"""The command grammar of the Slack bot: parsing, mention text and mrkdwn escaping."""

from __future__ import annotations

import pytest

from runtime.slack.commands import Command, CommandError, escape, help_text, mention_text, parse_command


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("create Checkout down", Command("create", title="Checkout down")),
        (
            "create Checkout 5xx > 5% severity=High service=checkout service=ledger",
            Command("create", title="Checkout 5xx > 5%", severity="high", services=("checkout", "ledger")),
        ),
        ("create severity=low  Disk   nearly full", Command("create", title="Disk nearly full", severity="low")),
        ("status INC-42", Command("status", incident="INC-42")),
        ("ACK INC-42", Command("ack", incident="INC-42")),
        ("resolve INC-42", Command("resolve", incident="INC-42")),
        ("resolve INC-42 rolled back  the deploy", Command("resolve", incident="INC-42", note="rolled back  the deploy")),
        ("remediate 7", Command("remediate", incident="7")),
        ("help", Command("help")),
        ("help me", Command("help")),
        ("   ", Command("help")),
    ],
)
def test_parse_command(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("declare Checkout down", "Unknown command `declare`."),
        ("<!channel> hi", "Unknown command `&lt;!channel&gt;`."),
        ("create", "`create` needs a title. Usage: `create <title> [severity=<level>] [service=<name>]`"),
        ("create severity=high", "`create` needs a title. Usage: `create <title> [severity=<level>] [service=<name>]`"),
        ("create Down severity=urgent", "Unknown severity `urgent`; use one of critical, high, medium, low."),
        ("create Down severity=high severity=low", "`severity=` is given twice; give it once"),
        ("create Down service=", "`service=` needs a value. Usage: `create <title> [severity=<level>] [service=<name>]`"),
        ("status", "`status` takes exactly one incident id. Usage: `status <incident id>`"),
        ("status please — was ist los?", "`status` takes exactly one incident id. Usage: `status <incident id>`"),
        ("ack INC-1 INC-2", "`ack` takes exactly one incident id. Usage: `ack <incident id>`"),
        ("resolve", "`resolve` needs an incident id. Usage: `resolve <incident id> [note]`"),
        ("status " + "x" * 101, "`status` needs an incident id such as INC-42, not a word of 101 characters."),
    ],
)
def test_parse_command_rejects(text: str, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    assert str(caught.value) == message


def test_create_title_longer_than_column_is_rejected() -> None:
    with pytest.raises(CommandError) as caught:
        parse_command("create " + "a" * 1001)
    assert str(caught.value) == "The title has 1001 characters; shorten it to at most 1000."


def test_mention_text_strips_leading_mention_and_decodes_entities() -> None:
    assert mention_text("<@U0BOT0000> create A &amp; B &lt;x&gt;") == " create A & B <x>"
    assert mention_text("<@U0BOT0000|irules> help") == " help"


def test_mention_text_keeps_later_mentions() -> None:
    assert mention_text("ack INC-1 <@U0BOT0000>") == "ack INC-1 <@U0BOT0000>"


def test_escape_neutralises_mentions_and_links() -> None:
    assert escape("<!channel> & <https://x.example|y>") == "&lt;!channel&gt; &amp; &lt;https://x.example|y&gt;"


def test_help_text_names_the_slash_command() -> None:
    lines = help_text("/inc").splitlines()
    assert lines[0] == "Use `/inc <command>` or mention the bot with a command:"
    assert lines[1] == "• `create <title> [severity=<level>] [service=<name>]` opens an incident"
    assert lines[-1] == "Severity levels: critical, high, medium, low."
    assert len(lines) == 8
