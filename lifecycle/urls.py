"""Database URLs in error text: no part of the password ever leaves the process.

A password may hold characters a URL reserves (``@ : / # ? %``, spaces). Percent-encoded,
SQLAlchemy parses it right; a raw ``@`` makes it split the URL in the wrong place, and a driver
then echoes a *piece* of the password as a host name, port or database ("could not translate
host name "ss@127.0.0.1""). So the userinfo is taken to end at the URL's *last* ``@`` (redacting
too much is safe), :func:`redact` removes the password and every piece of it that a parser could
have split off, and :func:`check_url` refuses a URL that SQLAlchemy would split differently,
before anything is resolved or connected (looking up the host "ss@…" would send a piece of the
password to the name server).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

import sqlalchemy as sa

REDACTED = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# A URL in free text, up to the last ``@`` of its token: group ``user`` keeps the user name.
_URL_CREDENTIALS = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s'\"<>:]*)(?P<rest>:[^\s'\"<>]*)?@"
)
# Pieces this long are removed wherever they appear; shorter ones only as whole words.
MIN_PIECE = 3
HINT = (
    "percent-encode reserved characters (@ : / # ? % and spaces) in the user name and "
    "password, e.g. urllib.parse.quote(password, safe='')"
)


class DatabaseUrlError(ValueError):
    """A database URL that cannot be parsed unambiguously; the message holds no part of it."""


def userinfo(url: str) -> str | None:
    """``user:password`` of ``url``: everything between ``scheme://`` and the last ``@``."""
    match = _SCHEME.search(url)
    rest = url[match.end() :] if match else url
    at = rest.rfind("@")
    return rest[:at] if at >= 0 else None


def _is_delimiter(char: str) -> bool:
    return not (char.isalnum() or char in "-._~")


def pieces(secret: str) -> set[str]:
    """Every substring of ``secret`` that starts and ends at its edges or at a reserved
    character: what a parser splitting on those characters could show on its own."""
    cuts = {0, len(secret)}
    for i, char in enumerate(secret):
        if _is_delimiter(char):
            cuts.update({i, i + 1})
    ordered = sorted(cuts)
    return {secret[i:j] for i in ordered for j in ordered if i < j}


def _parsed(url: str) -> sa.engine.URL | None:
    try:
        return sa.engine.make_url(url)
    except Exception:
        return None


def _agrees(parsed: sa.engine.URL, info: str | None) -> bool:
    """SQLAlchemy split the URL at the same ``@`` as :func:`userinfo` (user and password)."""
    if info is None:
        return parsed.username is None and parsed.password is None
    user, _, password = info.partition(":")
    same_user = (parsed.username or "") == unquote(user)
    return same_user and (parsed.password or "") == unquote(password)


def check_url(url: str, what: str) -> None:
    """Raise :class:`DatabaseUrlError` (naming ``what``, never the URL) unless SQLAlchemy
    parses ``url`` with the user name and password that end at its last ``@``."""
    parsed = _parsed(url)
    if parsed is None:
        raise DatabaseUrlError(f"{what} is not a valid database URL: {HINT}")
    if not _agrees(parsed, userinfo(url)):
        raise DatabaseUrlError(
            f"{what} has an '@' (or another reserved character) in its user name or password "
            f"that splits it in the wrong place: {HINT}"
        )


def secrets_of(url: str) -> set[str]:
    """The password of ``url`` as written, decoded and encoded, and every piece of each; when
    SQLAlchemy misparses the URL, also the host, port and database it made of those pieces."""
    info = userinfo(url)
    found: set[str] = set()
    if info and ":" in info:
        raw = info.partition(":")[2]
        for form in {raw, unquote(raw), quote(unquote(raw), safe="")}:
            found |= pieces(form)
    parsed = _parsed(url)
    if parsed is not None:
        if parsed.password:
            found |= pieces(str(parsed.password))
        if not _agrees(parsed, info):
            found |= {str(v) for v in (parsed.host, parsed.port, parsed.database) if v}
    return {s for s in found if s.strip()}


def redact(text: str, url: str) -> str:
    """``text`` with the whole userinfo (``user:password@``) of every URL in it replaced by
    ``***@``, and no piece of ``url``'s password left: long pieces anywhere, short ones (with a
    letter or digit) as whole words, so a one-letter password does not blank every such letter.
    The user name goes too: where the password ends is a guess when it holds a raw ``@``."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}{REDACTED}@", text)
    for secret in sorted(secrets_of(url), key=len, reverse=True):
        if len(secret) >= MIN_PIECE:
            text = text.replace(secret, REDACTED)
        elif any(c.isalnum() for c in secret):
            word = rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])"
            text = re.sub(word, REDACTED, text)
    # Once more: a password with a space hid its URL's userinfo from the first pass.
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}{REDACTED}@", text)
