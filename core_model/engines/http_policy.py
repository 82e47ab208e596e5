"""The HTTP rules of the OpenAI-compatible engine, as plain functions.

- Where the API key may go: over https, or over plain http only to this machine (a loopback
  address or `localhost`), unless the caller opts in (`allow_insecure_key`).
- Redirects: never followed to another origin (scheme, host, port), so neither the key nor
  the page image leaves the server the caller named; a same-origin 307/308 is followed.
- Retries: connection errors, HTTP 408, 429 and 5xx (not 501/505) are retried with
  exponential backoff and jitter, or after the server's `Retry-After`; everything else
  (400, 401, 404, ...) is an answer, not a hiccup.
- Server-sent events: the `data:` payload of one line.
"""

from __future__ import annotations

import email.utils
import ipaddress
import random
import time
from urllib.parse import urlsplit

FOLLOWED_REDIRECTS = (307, 308)  # keep method and body; others would turn the POST into a GET
REDIRECTS = (301, 302, 303, 307, 308)


def is_loopback_host(host: str) -> bool:
    """True for `localhost` (and `*.localhost`) and loopback IP addresses."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host.

    Raises:
        ValueError: another scheme or no host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http:// or https:// URL with a host, not {url!r}")
    return url


def check_key_transport(url: str, *, has_key: bool, allow_insecure_key: bool) -> None:
    """Refuse to send an API key in clear text over a network.

    Raises:
        ValueError: a key, plain http and a host that is not this machine, without the
            opt-in (the message names the option and the CLI flag).
    """
    parts = urlsplit(url)
    if not has_key or parts.scheme != "http" or allow_insecure_key:
        return
    if is_loopback_host(parts.hostname or ""):
        return
    raise ValueError(
        f"refusing to send the API key over plain http to {parts.hostname}: use https, or "
        "allow it explicitly (allow_insecure_key=True, dsocr --allow-insecure-key)"
    )


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def redirect_refusal(status: int, source: str, target: str) -> str | None:
    """Why a redirect from `source` to `target` is not followed, or None to follow it."""
    if origin(source) != origin(target):
        return (
            f"the server redirected to another host ({target}, HTTP {status}); not followed, "
            "so the page and the API key go only to the base_url's host: point base_url at "
            "the final address"
        )
    if status not in FOLLOWED_REDIRECTS:
        return (
            f"the server redirected to {target} with HTTP {status}, which would turn the POST "
            "into a GET; not followed: point base_url at the final address"
        )
    return None


def is_retryable_status(status: int) -> bool:
    """408, 429 and 5xx other than 501 (not implemented) and 505 (HTTP version)."""
    return status in (408, 429) or (500 <= status <= 599 and status not in (501, 505))


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A `Retry-After` header as seconds from now (delta-seconds or an HTTP date), or None
    when absent or unreadable. Never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(retry: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `retry` (0 for the first): min(cap, base * 2^retry),
    of which the second half is random ("equal jitter": spread out, never near zero)."""
    ceiling = min(cap, base * (2**retry))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def sse_data(line: str) -> str | None:
    """The payload of a server-sent-event `data:` line; None for other lines (comments,
    blank lines, `event:`...)."""
    if not line.startswith("data:"):
        return None
    return line[len("data:") :].strip()
