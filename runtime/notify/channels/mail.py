"""E-mail through the smarthost of `settings smtp`, with the standard library's smtplib.

smtplib blocks, so each message is sent from a worker thread with a socket
timeout. Port 465 means TLS from the start. On any other port the session is
upgraded with STARTTLS when `require_tls` is true, which is the default (as
in Alertmanager). A login is only sent over TLS or
to a loopback smarthost, so a password never crosses the network in clear.

Subjects come from alert data: every control character, CR and LF included,
becomes a space before the header is set, so no alert can add a header.
"""

from __future__ import annotations

import email.utils
import functools
import ipaddress
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

import anyio.to_thread

from compiler import ir
from runtime.notify.channels._common import Attempt, failed, quote
from runtime.notify.model import DELIVERED, FAILED, RETRY, Delivery, Outbound

IMPLICIT_TLS_PORT = 465


@dataclass(frozen=True, slots=True)
class Session:
    """How to reach the smarthost: everything but the message."""

    host: str
    port: int
    require_tls: bool
    username: str | None
    password: str | None
    timeout_s: float

    def __repr__(self) -> str:
        return f"Session(host={self.host!r}, port={self.port}, require_tls={self.require_tls}, username={self.username!r})"


async def send_email(outbound: Outbound, attempt: Attempt) -> Delivery:
    smtp = attempt.settings.smtp
    if smtp is None:
        raise failed("email channel needs settings smtp")
    sender = smtp.sender
    if not sender:
        raise failed("settings smtp has no from address")
    recipients = parse_recipients(attempt.target(outbound))
    session = open_session(smtp, attempt)
    message = build_message(outbound, sender, recipients)

    send = functools.partial(deliver, session, message, email.utils.parseaddr(sender)[1], recipients)
    try:
        refused = await anyio.to_thread.run_sync(send)
    except smtplib.SMTPServerDisconnected as error:
        # smtplib reports a read that timed out as a disconnection, with "timed out" in the text.
        return Delivery(RETRY, quote(f"smtp server {session.host}:{session.port} disconnected: {error}"))
    except smtplib.SMTPException as error:
        return classify_smtp_error(error)
    except ssl.SSLCertVerificationError as error:
        return Delivery(
            FAILED, f"TLS certificate of smtp server {session.host} is not valid: {quote(error.verify_message or str(error))}"
        )
    except TimeoutError:
        return Delivery(RETRY, f"smtp server {session.host}:{session.port} timed out after {session.timeout_s:g} s")
    except OSError as error:
        return Delivery(RETRY, f"connection to smtp server {session.host}:{session.port} failed ({type(error).__name__})")

    reference = {"message_id": message["Message-ID"]}
    detail = ""
    if refused:
        detail = "smtp server refused " + ", ".join(f"{address} ({code})" for address, (code, _) in sorted(refused.items()))
    return Delivery(DELIVERED, quote(detail), reference=reference)


def open_session(smtp: ir.Smtp, attempt: Attempt) -> Session:
    host, port = split_smarthost(smtp.smarthost)
    password = attempt.secret(smtp.password.secret) if smtp.password else None
    if smtp.username and password is None:
        raise failed("settings smtp has a username but no password")
    require_tls = smtp.require_tls is not False
    if smtp.username and not require_tls and port != IMPLICIT_TLS_PORT and not is_loopback(host):
        raise failed(f"smtp login to {host} needs TLS; set require_tls true")
    return Session(host, port, require_tls, smtp.username, password, attempt.endpoints.timeout_s)


def split_smarthost(smarthost: str) -> tuple[str, int]:
    """Split `host:port` (or `[v6address]:port`) into host and port."""
    host, _, port = smarthost.rpartition(":")
    if not host or not port.isdigit():
        raise failed(f"settings smtp smarthost {smarthost!r} is not host:port")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_recipients(target: str | None) -> list[str]:
    """Return the addresses of a comma-separated target, such as `a@example.com, Ops <ops@example.com>`."""
    if not target or has_control_characters(target):
        raise failed(f"email channel has no valid recipients: {target!r}")
    recipients = [address for _, address in email.utils.getaddresses([target]) if "@" in address]
    if not recipients:
        raise failed(f"email channel has no valid recipients: {target!r}")
    return recipients


def has_control_characters(text: str) -> bool:
    return any(ord(character) < 0x20 or ord(character) == 0x7F for character in text)


def header_text(text: str) -> str:
    """Return `text` fit for a header: control characters become spaces, runs of spaces become one."""
    cleaned = "".join(" " if ord(character) < 0x20 or 0x7F <= ord(character) < 0xA0 else character for character in text)
    # U+2028 and U+2029 are line breaks to some mail readers.
    return " ".join(cleaned.replace("\u2028", " ").replace("\u2029", " ").split())


def build_message(outbound: Outbound, sender: str, recipients: list[str]) -> EmailMessage:
    payload = outbound.payload
    message = EmailMessage()
    message["Subject"] = header_text(str(payload.get("subject", "")))
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = email.utils.formatdate(usegmt=True)
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "irules.invalid"
    message["Message-ID"] = email.utils.make_msgid(domain=domain)
    # RFC 3834: vacation responders and ticket systems must not reply to this message.
    message["Auto-Submitted"] = "auto-generated"

    # Later messages about an incident reply to the first, so mail readers thread them.
    parent = outbound.thread.get("message_id", "")
    if parent.startswith("<") and parent.endswith(">") and not has_control_characters(parent):
        message["In-Reply-To"] = parent
        message["References"] = parent

    message.set_content(str(payload.get("text", "")))
    if payload.get("html"):
        message.add_alternative(str(payload["html"]), subtype="html")
    return message


def deliver(session: Session, message: EmailMessage, sender: str, recipients: list[str]) -> dict[str, tuple[int, bytes]]:
    """Send `message` in one SMTP session; return the recipients the server refused while accepting others."""
    context = ssl.create_default_context()
    if session.port == IMPLICIT_TLS_PORT:
        client: smtplib.SMTP = smtplib.SMTP_SSL(session.host, session.port, timeout=session.timeout_s, context=context)
    else:
        client = smtplib.SMTP(session.host, session.port, timeout=session.timeout_s)
    with client:
        client.ehlo()
        if session.require_tls and session.port != IMPLICIT_TLS_PORT:
            if not client.has_extn("starttls"):
                raise failed(f"smtp server {session.host} does not offer STARTTLS; set require_tls false to send without TLS")
            client.starttls(context=context)
            client.ehlo()
        if session.username:
            client.login(session.username, session.password or "")
        return client.send_message(message, sender, recipients)


def classify_smtp_error(error: smtplib.SMTPException) -> Delivery:
    """Classify an SMTP error: 4xx replies are retried, 5xx replies and unsupported features fail."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        outcome = RETRY if any(400 <= code < 500 for code in codes) else FAILED
        refused = ", ".join(
            f"{address} ({code} {reply_text(text)})" for address, (code, text) in sorted(error.recipients.items())
        )
        return Delivery(outcome, quote(f"smtp server refused every recipient: {refused}"))
    if isinstance(error, smtplib.SMTPResponseException):
        outcome = RETRY if 400 <= error.smtp_code < 500 else FAILED
        prefix = "smtp login failed" if isinstance(error, smtplib.SMTPAuthenticationError) else "smtp server replied"
        return Delivery(outcome, quote(f"{prefix} {error.smtp_code} {reply_text(error.smtp_error)}"))
    return Delivery(FAILED, quote(f"smtp failed: {error}"))


def reply_text(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text
