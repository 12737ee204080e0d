"""Sending one message through one channel: a Slack-compatible webhook, a signed JSON webhook,
or e-mail over SMTP. Each call is bounded by GREENLIGHT_NOTIFY_TIMEOUT_SECONDS, follows no
redirect, and raises ``DeliveryFailed`` whose text names what went wrong without the channel's
secret (the URL or its path, the signing key, the SMTP password) and without the server's reply."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.policy import SMTP
from urllib.parse import urlsplit, urlunsplit

import httpx

from server.config import Settings

SIGNATURE_HEADER = "X-Greenlight-Signature-256"
TIMESTAMP_HEADER = "X-Greenlight-Timestamp"
_RETRY_STATUSES = {408, 425, 429}


class DeliveryFailed(Exception):
    """A message was not delivered. ``permanent``: sending it again cannot help (a refusal, a
    redirect, a private address refused), so the row is given up on at once."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def signature(key: str, body: bytes, *, timestamp: int, delivery_id: str) -> str:
    """The value of ``X-Greenlight-Signature-256``: ``sha256=`` and the hex HMAC-SHA256 of
    ``<timestamp>.<delivery id>.<body>``. The time and the id are signed with the body so that a
    receiver can refuse an old message, or one it has already had, replayed to it."""
    signed = f"{timestamp}.{delivery_id}.".encode() + body
    return "sha256=" + hmac.new(key.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def http_client(settings: Settings) -> httpx.Client:
    """No redirects followed (a receiver must not send a message, and its signature, elsewhere),
    no proxy taken from the environment, every request bounded in time."""
    return httpx.Client(timeout=settings.notify_timeout_seconds, follow_redirects=False, trust_env=False)


def post(http: httpx.Client, settings: Settings, url: str, content: bytes, headers: dict[str, str]) -> None:
    """Post ``content`` to ``url`` through ``http``; a request pinned to a checked address goes
    through a connection of its own instead (``_post_alone``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    target, extensions = url, {}
    if settings.notify_deny_private:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = public_address(host, port)
        # Connect to the address that was checked, not to whatever the name resolves to a moment
        # later (DNS rebinding); the name still goes in Host and in TLS (SNI, certificate check).
        target, pinned_headers, extensions = pinned(url, address)
        headers = {**headers, **pinned_headers}
    try:
        if settings.notify_deny_private:
            reply = _post_alone(settings, target, content, headers, extensions)
        else:
            reply = http.post(target, content=content, headers=headers)
    except httpx.TimeoutException:
        raise DeliveryFailed(f"{host} did not answer within {settings.notify_timeout_seconds:g} s") from None
    except httpx.HTTPError as error:
        raise DeliveryFailed(f"could not reach {host} ({type(error).__name__})") from None
    if reply.is_success:
        return
    if reply.is_redirect:
        raise DeliveryFailed(
            f"{host} answered with a redirect (HTTP {reply.status_code}), which is not followed",
            permanent=True,
        )
    permanent = reply.status_code < 500 and reply.status_code not in _RETRY_STATUSES
    raise DeliveryFailed(f"{host} answered HTTP {reply.status_code}", permanent=permanent)


def _post_alone(
    settings: Settings, target: str, content: bytes, headers: dict[str, str], extensions: dict[str, str]
) -> httpx.Response:
    """A pinned request, on a connection of its own: the pool knows connections by address only,
    so a kept-alive one made for another name at the same address would carry this request under
    a certificate checked for that other name."""
    with http_client(settings) as own:
        return own.post(target, content=content, headers=headers, extensions=extensions)


def pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """``url`` sent to ``address`` instead of its host's name: the URL to request, the Host header
    and the request extensions that keep the name for TLS."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    extensions = {"sni_hostname": parts.hostname or ""} if parts.scheme == "https" else {}
    return urlunsplit(parts._replace(netloc=netloc)), {"Host": parts.netloc}, extensions


def public_address(host: str, port: int) -> str:
    """With GREENLIGHT_NOTIFY_DENY_PRIVATE: one address of ``host`` to connect to, refused if any
    of its addresses is loopback, private, link-local (cloud metadata), multicast or reserved."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError:
        raise DeliveryFailed(f"{host} does not resolve") from None
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        if not _is_public(ipaddress.ip_address(address.split("%")[0])):
            raise DeliveryFailed(
                f"{host} resolves to a non-public address, refused (GREENLIGHT_NOTIFY_DENY_PRIVATE)",
                permanent=True,
            )
    if not addresses:
        raise DeliveryFailed(f"{host} does not resolve")
    return addresses[0]


# Ranges the standard library still counts as global: site-local (deprecated, routed inside a
# site) and local-use NAT64 (translates to whatever the site chooses).
_NOT_PUBLIC = (ipaddress.ip_network("fec0::/10"), ipaddress.ip_network("64:ff9b:1::/48"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Global, and so is every IPv4 address it carries: an IPv6 address may reach an IPv4 host
    (NAT64, IPv4-mapped or -compatible, 6to4, Teredo), and that host must be public too."""
    if not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return True
    if any(address in network for network in _NOT_PUBLIC):
        return False
    embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in _NAT64 or int(address) >> 32 == 0:  # NAT64, or IPv4-compatible ::a.b.c.d
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return all(inner.is_global for inner in embedded if inner is not None)


def send_email(settings: Settings, recipients: list[str], subject: str, text: str) -> None:
    if not settings.smtp_host:
        raise DeliveryFailed("no SMTP server is configured (GREENLIGHT_SMTP_HOST)")
    message = EmailMessage(policy=SMTP)
    # Subject and body come from messages.py, one line without control characters: the policy
    # would refuse a line break in a header anyway, rather than let it start a new header.
    message["Subject"] = subject
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(recipients)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    timeout = settings.notify_timeout_seconds
    context = ssl.create_default_context()
    try:
        if settings.smtp_ssl:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.smtp_host, settings.smtp_port, timeout=timeout, context=context
            )
        else:
            client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
        with client:
            if settings.smtp_starttls and not settings.smtp_ssl:
                client.starttls(context=context)  # raises if the server does not offer it
            if settings.smtp_username:
                client.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            client.send_message(message)
    except smtplib.SMTPNotSupportedError:
        raise DeliveryFailed(
            f"{settings.smtp_host} does not offer STARTTLS (GREENLIGHT_SMTP_STARTTLS=true): "
            "nothing was sent in the clear"
        ) from None
    except smtplib.SMTPAuthenticationError as error:
        raise DeliveryFailed(
            f"{settings.smtp_host} refused the SMTP user name or password ({error.smtp_code})"
        ) from None
    except smtplib.SMTPRecipientsRefused as error:
        raise DeliveryFailed(
            f"{settings.smtp_host} refused the recipients {', '.join(error.recipients)}", permanent=True
        ) from None
    except smtplib.SMTPResponseException as error:
        permanent = 500 <= error.smtp_code < 600
        raise DeliveryFailed(
            f"{settings.smtp_host} answered SMTP {error.smtp_code}", permanent=permanent
        ) from None
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryFailed(
            f"could not send through {settings.smtp_host} ({type(error).__name__})"
        ) from None
