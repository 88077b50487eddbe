"""Email addresses as account names (issue #9.4).

One spelling per account: NFKC, then case folding, so "josé" typed as NFC or
NFD, "Kate" with a Kelvin sign and "KATE" are the same account. Addresses
that can look like someone else's are refused: invisible characters
(format/control/private-use, e.g. a zero-width space or a bidi override),
any whitespace, and a label that mixes scripts (a Cyrillic "а" inside a Latin
name). Mixed scripts follow Unicode TS #39's "highly restrictive" level:
one script per label, or Latin with Han + Hiragana/Katakana, Han + Bopomofo,
or Han + Hangul. The script of a character is read from its Unicode name
(Python's unicodedata has no script property).
"""
from __future__ import annotations

import unicodedata

EMAIL_BYTES_MAX = 254
_COMMON = None  # digits, punctuation, symbols: compatible with every script
_ALLOWED_MIXES = ({"LATIN", "CJK", "HIRAGANA", "KATAKANA"}, {"LATIN", "CJK", "BOPOMOFO"},
                  {"LATIN", "CJK", "HANGUL"})


class EmailError(ValueError):
    pass


def _script(ch: str):
    if ch.isascii():
        return "LATIN" if ch.isalpha() else _COMMON
    cat = unicodedata.category(ch)
    if cat[0] in "NPSZ" or cat == "Lm":
        return _COMMON
    if cat[0] == "M":
        return _COMMON  # a combining mark takes its base's script (NFKC composed most of them)
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    if first in ("HALFWIDTH", "FULLWIDTH"):  # NFKC already mapped most of these
        first = name.split(" ", 2)[1]
    return "CJK" if first in ("CJK", "IDEOGRAPHIC") else first or "UNKNOWN"


def _check_label(label: str) -> None:
    scripts = {s for s in map(_script, label) if s is not _COMMON}
    if len(scripts) > 1 and not any(scripts <= mix for mix in _ALLOWED_MIXES):
        raise EmailError(f"this email address mixes scripts ({', '.join(sorted(s.title() for s in scripts))}), "
                         "so it could pass for another address; use one script per part")


def normalize(email: str) -> str:
    """The one spelling of an address; EmailError (with a reason) if it is not usable."""
    if not isinstance(email, str):
        raise EmailError("the email must be a string")
    e = unicodedata.normalize("NFKC", email.strip()).casefold()
    e = unicodedata.normalize("NFKC", e)  # case folding can undo NFKC (e.g. "ǰ")
    for ch in e:
        cat = unicodedata.category(ch)
        if cat in ("Cf", "Cc", "Co", "Cs", "Cn") or ch.isspace() or cat in ("Zl", "Zp"):
            raise EmailError(f"the email contains a space, an invisible or a control character (U+{ord(ch):04X})")
    if len(e.encode()) > EMAIL_BYTES_MAX:
        raise EmailError(f"the email is longer than {EMAIL_BYTES_MAX} bytes")
    local, at, domain = e.rpartition("@")
    if not at or not local or not domain:
        raise EmailError(f"'{email[:80]}' is not a valid email address")
    for label in [local, *domain.split(".")]:
        _check_label(label)
    return e
