"""Sending one delivery: a signed webhook POST or an e-mail over SMTP.

Both raise :class:`SendError` with a short reason on anything but success (a 2xx
answer; the SMTP server accepting the message), so the caller records a failure and
retries later.
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
from email.message import EmailMessage

import aiohttp

from mimetic.config import Settings

from . import payload as p
from .queue import Due
from .receivers import read_secret


class SendError(RuntimeError):
    pass


async def send_webhook(http: aiohttp.ClientSession, s: Settings, d: Due) -> str:
    data = p.body(d.payload, d.reason)
    try:
        secret = read_secret(s, d.secret_ref or "")
    except OSError as exc:
        raise SendError(f"no signing secret {d.secret_ref}: {type(exc).__name__}") from None
    headers = {"Content-Type": "application/json", p.IDEMPOTENCY_HEADER: p.idempotency_key(d.alert_id, d.state),
               p.SIGNATURE_HEADER: p.sign(secret, data), "User-Agent": "mimetic-notifier"}
    try:
        async with http.post(d.target, data=data, headers=headers, allow_redirects=False,
                             timeout=aiohttp.ClientTimeout(total=s.notify_send_timeout_s)) as resp:
            await resp.read()
            if 200 <= resp.status < 300:
                return f"HTTP {resp.status}"
            raise SendError(f"HTTP {resp.status}")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        # a webhook URL may carry a credential in its path or query: never in logs or the database
        reason = str(exc).replace(d.target, "<url>")[:200]
        raise SendError(f"{type(exc).__name__}: {reason}") from None


def email_message(s: Settings, d: Due) -> EmailMessage:
    key = p.idempotency_key(d.alert_id, d.state)
    msg = EmailMessage()
    msg["From"] = s.notify_smtp_from
    msg["To"] = d.target
    msg["Subject"] = p.email_subject(d.payload)
    # one Message-ID per notice and receiver: a repeat after a crash is recognisable as the same message
    digest = hashlib.sha256(f"{key}|{d.target}".encode()).hexdigest()[:32]
    msg["Message-ID"] = f"<{digest}@mimetic.alerts>"
    msg["X-Mimetic-Idempotency-Key"] = key
    msg.set_content(p.email_text(d.payload, d.reason))
    return msg


def _smtp_send(s: Settings, msg: EmailMessage) -> None:
    with smtplib.SMTP(s.notify_smtp_host, s.notify_smtp_port, timeout=s.notify_send_timeout_s) as smtp:
        if s.notify_smtp_starttls:
            smtp.starttls()
        if s.notify_smtp_user:
            password = (s.secrets_dir / "notify-smtp-password").read_text().strip()
            smtp.login(s.notify_smtp_user, password)
        smtp.send_message(msg)


async def send_email(s: Settings, d: Due) -> str:
    msg = email_message(s, d)
    try:
        await asyncio.to_thread(_smtp_send, s, msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise SendError(f"SMTP {type(exc).__name__}: {str(exc)[:200]}") from None
    return "SMTP accepted"
