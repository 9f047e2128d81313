"""Finding secrets in text the way people write them: FlowPilot's own rules.

What they catch (each finding a *kind* and the span of the secret value, never
the words around it):

- free text: "the password is X", "pw: X", "passphrase X", "set his password
  to X", "PIN 4821", "the code is 739201", "recovery codes: …", "login
  jdoe / X"; BitLocker recovery keys and product keys by their shape;
- assignments and switches: ``password=X``, ``"api_key": "X"``, ``-Password X``,
  ``--token=X``, ``/pass:X``, ``/p:X``, ``/rp X``; ``net use … X``,
  ``net user jdoe X``, ``psexec -p X``, ``echo X | runas``, ``curl -u u:X``,
  ``smbclient -U u%X``, ``ConvertTo-SecureString "X"``, credential
  constructors, XML ``<Password>X</Password>``;
- URLs with credentials (``scheme://user:X@host``) and secret query
  parameters (``?sig=X``, ``access_token=X``); ``Authorization: Bearer X``;
- key material by shape: PEM and PuTTY private keys (whole block), JWTs, AWS,
  Azure, Google, GitHub, GitLab, Slack, Stripe, OpenAI/Anthropic, SendGrid,
  npm keys and tokens; connection strings through their ``Password=``,
  ``Pwd=``, ``AccountKey=`` and ``SharedAccessKey=`` parts.

A value that is a placeholder (``$pw``, ``%PASSWORD%``, ``{{password}}``,
``<password>``, ``***``, ``[REDACTED]``) or a word that says something about a
password ("expired", "reset", "required") is not a secret. Free-text forms
demand a value that looks like one (two kinds of characters, e.g. letters
and digits), so "the user forgot their password" and "password reset link
sent" stay as they are.

This module imports nothing heavy: the logs use it on every line
(:func:`redact` here), while notes, model context and scripts add Yelp's
detect-secrets plugins on top (``services.core.ai.redaction``).

Cost: lines are screened with plain substring tests first; a rule's regex
runs only on a line that holds one of its anchors.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

MASK = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class Finding:
    """A secret's kind (``password``, ``aws_access_key``, …) and the span of its
    value in the text scanned: ``text[start:end]`` is the secret."""

    kind: str
    start: int
    end: int

    def line(self, text: str) -> int:
        """The 1-based line of ``text`` the secret starts on."""
        return text.count("\n", 0, self.start) + 1


# --- values ---------------------------------------------------------------------

# What a value is not: placeholders, variables, masks.
_PLACEHOLDER = re.compile(
    r"""^(?:\$|%[\w.-]+%|\{\{|\{\w*\}$|<[^>]*>?$|\[(?:redacted|hidden|removed)|\*+$|[x•·.…_-]{3,}$|\(|@[({]|\[[\w.]+\]::|\S+\.(?:txt|xml|json|ps1|cfg|ini)$)""",
    re.I,
)
# Words that say something about a secret rather than being one.
_NOT_SECRETS = frozenset(
    """
    a an the this that these those it its is was are were be been being not no none null nil true false
    yes to for of in on at by as and or but with from via into onto than then so also again still too
    very expired expires expiring expiry incorrect wrong correct required requirement requirements reset
    resets changed change changes changing updated update set unset locked unlocked lockout blank empty
    missing stored saved valid invalid accepted rejected synced sync prompt prompts prompting manager
    policy policies hash hashed never unknown same old new temp temporary default defaults here there
    below above attached vault keeper keepass bitwarden lastpass 1password itglue hudu passportal secret
    secrets token tokens user users admin's login logon sign signin field fields box length age history
    complexity strength protected encrypted sent shared provided given entered typed rotated revoked
    removed disabled enabled works worked working fails failed failing ok okay fine good bad weak strong
    hidden masked redacted unchanged unknown n/a na tbd see check ask call email emailed texted phoned
    verbally
    """.split()  # noqa: SIM905
)


def _classes(value: str) -> int:
    """Kinds of characters: digits, symbols, and upper case past the first
    letter (so "Expired" counts once, "CoffeeShop" twice)."""
    digit = any(c.isdigit() for c in value)
    symbol = any(not c.isalnum() for c in value)
    lower = any(c.islower() for c in value)
    inner_upper = any(c.isupper() for c in value[1:])
    return digit + symbol + (lower and inner_upper) + (lower or value[:1].isupper())


# Shapes that are never secrets, even where a secret could be.
_INNOCENT = re.compile(
    r"""^(?:
        (?:\d{1,3}\.){3}\d{1,3}(?::\d+)?            # IPv4
      | [0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}  # GUID
      | \{[0-9a-f-]{36}\}
      | 0x[0-9a-f]+                                  # error codes
      | KB\d{6,8}                                    # updates
      | v?\d+(?:\.\d+)+(?:-\w+)?                     # versions
      | \d{4}-\d{2}-\d{2}(?:[T\s]\d{2}:\d{2}(?::\d{2})?\S*)?  # dates
      | \d{1,2}:\d{2}(?::\d{2})?(?:am|pm)?           # times
      | (?:[0-9a-f]{2}[:-]){5}[0-9a-f]{2}            # MAC addresses
      | [a-z]:\\\S*                                  # Windows paths
      | \\\\\S+                                      # UNC paths
      | /\S*                                         # absolute paths
      | [\w-]+(?:\.[\w-]+)+\.(?:com|net|org|local|lan|corp|internal|io|co|uk|de|nl|au)  # host names
      | (?:https?|ftp)://\S+                         # URLs (credentials have their own rule)
      | [\w.+-]+@[\w-]+(?:\.[\w-]+)+                 # e-mail addresses
    )$""",
    re.I | re.X,
)
_TRAILING = ".,;:)]}>!?'\""


def plausible(value: str, *, strong: bool, minimum: int = 4) -> bool:
    """Whether ``value`` can be a secret: long enough, no placeholder, not a
    word about passwords; ``strong`` also asks for two kinds of characters and
    no innocent shape (free text, where the words around it are weaker
    evidence)."""
    if len(value) < minimum or len(value) > 512 or _PLACEHOLDER.match(value):
        return False
    if value.lower().strip(_TRAILING) in _NOT_SECRETS:
        return False
    return not strong or (_classes(value) >= 2 and not _INNOCENT.match(value.rstrip(_TRAILING)))


_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}


def take_value(line: str, at: int, *, stop: str = "") -> tuple[int, int]:
    """The span of the value starting at ``line[at:]``: a quoted string's
    inside, else up to white space or a quote (and any of ``stop``), without
    sentence punctuation at its end."""
    if at < len(line) and line[at] in _QUOTES:
        close = line.find(_QUOTES[line[at]], at + 1)
        if close > at + 1:
            return at + 1, close
        at += 1
    end, last = at, min(len(line), at + 513)  # longer is no secret (``plausible``)
    while end < last and not line[end].isspace() and line[end] not in "\"'`<" and line[end] not in stop:
        end += 1
    while end > at + 1 and line[end - 1] in ".,;:)]}>":
        end -= 1
    return at, end


# --- rules ----------------------------------------------------------------------

Emit = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class _Rule:
    """``pattern`` names the value ``v`` (or ends where a value starts, with
    ``parse``); ``strong``/``minimum`` are ``plausible``'s."""

    kind: str
    anchors: tuple[str, ...]  # lower-case substrings of which a line needs one
    pattern: re.Pattern[str]
    strong: bool = True
    minimum: int = 4
    parse: bool = False
    stop: str = ""
    check: Callable[[Any, str], bool] | None = None  # (match, line)
    kind_of: Callable[[Any], str] | None = None


_PASSWORD_WORDS = r"pass(?:word|wd|phrase|code)?|pwd|pw"  # noqa: S105 (a pattern)
_KEYWORD = re.compile(
    r"(?i)(?P<k>client[_-]?secret|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key"
    r"|account[_-]?key|shared[_-]?access[_-]?key|auth[_-]?token|access[_-]?token|refresh[_-]?token"
    r"|session[_-]?token|sas[_-]?token|subscription[_-]?key|password|passwd|passphrase|passcode|pwd|pass|pw"
    r"|secret|token)(?P<s>\w{0,40})[\"'\]]{0,2}[ \t]*(?::=|=>|==?|:)[ \t]*"
)
_SUFFIXES = frozenset(
    ["", *"s value text plain plaintext clear cleartext b64 base64 str string hash key accesskey".split()]  # noqa: SIM905
)
_PREFIX_WORDS = tuple(
    """
    admin root db sql user sa ftp smtp wifi local new old temp my default app service svc mail domain
    bind ldap vpn guest
    """.split()  # noqa: SIM905
)


def keyword_stands_alone(line: str, start: int, suffix: str) -> bool:
    """Whether the keyword at ``line[start:]`` followed by ``suffix`` names a
    secret: a word of its own (``DB_PASSWORD``, ``AdminPassword``,
    ``dbpassword``), not the end of another (``bypass``), with no suffix that
    makes it something else (``PasswordLastSet``, ``token_name``)."""
    if suffix.replace("_", "").replace("-", "").lower() not in _SUFFIXES and not suffix.isdigit():
        return False
    if start == 0:
        return True
    before = line[start - 1]
    if not before.isalnum() or before in "_-.":
        return True
    if before.islower() and line[start].isupper():  # camelCase boundary
        return True
    word = re.search(r"[A-Za-z]+$", line[:start])
    return word is not None and word.group(0).lower().endswith(_PREFIX_WORDS)


def _keyword_ok(match: re.Match[str], line: str) -> bool:
    return keyword_stands_alone(line, match.start("k"), match.group("s"))


def _keyword_kind(match: re.Match[str]) -> str:
    key = match.group("k").lower().replace("-", "_")
    if key.startswith("pass") or key in ("pwd", "pw"):
        return "password"
    if "token" in key:
        return "token"
    if key in ("api_key", "apikey", "subscription_key", "subscriptionkey"):
        return "api_key"
    if "private" in key:
        return "private_key"
    if "account" in key or "shared" in key:
        return "account_key"
    return "secret"


_CODE_QUALIFIERS = frozenset(
    """
    verification security otp mfa 2fa one-time onetime sms auth authentication login access door alarm
    gate unlock confirmation pairing sign-in signin passcode entry lock safe
    """.split()  # noqa: SIM905
)
_CODE_BLOCKLIST = frozenset(
    """
    error exit status return response http event stop bug area zip postal country product source reason
    result sql hresult fault reference ref qr bar barcode dial country tax discount promo class
    """.split()  # noqa: SIM905
)


def _strong_or_digits(value: str, *, digits: bool) -> bool:
    value = value.strip("\"'")
    if digits and value.isdigit():
        return 4 <= len(value) <= 12
    return plausible(value, strong=True)


# Words that describe a password rather than being one, beyond _NOT_SECRETS
# ("the password is known", "… is too short"): adjectives of state.
_STATE_WORDS = frozenset(
    """
    known short long complex simple easy hard visible shown needed available due different similar current
    previous right ready active inactive case-sensitive sensitive compromised leaked stale correct same
    """.split()  # noqa: SIM905
)


def _plain_word(value: str) -> bool:
    """A password written as one plain word ("the password is sunshine"):
    letters only, not a word about passwords, not a participle or adverb
    ("expired", "working", "currently")."""
    word = value.strip("\"'").rstrip(_TRAILING)
    lowered = word.lower()
    return (
        4 <= len(word) <= 64
        and word.isalpha()
        and lowered not in _NOT_SECRETS
        and lowered not in _STATE_WORDS
        and not lowered.endswith(("ed", "ing", "ly"))
    )


def _code_ok(match: re.Match[str], line: str) -> bool:
    qualifier = (match.group("q") or "").lower()
    if qualifier in _CODE_BLOCKLIST:
        return False
    return bool(match.group("c")) or qualifier in _CODE_QUALIFIERS


_VALUE = r"(?P<v>\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|[^\s\"':=][^\s\"']{0,511})"
_FREE_KEYWORDS = (
    r"(?P<k>pass(?:word|wd|phrase|code)?|pass\s+phrase|pwd|pw|secret|shared\s+secret|client\s+secret|api\s+key"
    r"|access\s+key|secret\s+key|wi-?fi\s+key|wpa2?\s+key|network\s+key|security\s+key|pre-?shared\s+key|psk"
    r"|(?:access\s+|api\s+|auth\s+)?token)"
)
_COPULA = (
    r"(?:has\s+been\s+(?:set|changed|reset)\s+to|(?:is|was)\s+(?:set|changed|reset)\s+to|is\s+now|was\s+now"
    r"|(?:set|changed|reset)\s+to|is|was|are|were|now|became|->|:|=|-|–)"
)

_RULES: list[_Rule] = [
    # key = value, "key": "value", key: value (env files, configs, JSON, INI,
    # connection strings).
    _Rule(
        "password",
        ("pass", "pw", "secret", "key", "token"),
        _KEYWORD,
        strong=False,
        minimum=3,
        parse=True,
        stop=";,&",
        check=_keyword_ok,
        kind_of=_keyword_kind,
    ),
    # "the local admin password is X", "password for jdoe is X".
    _Rule(
        "password",
        ("pass", "pw", "secret", "key", "token", "psk"),
        re.compile(
            r"(?i)\b"
            + _FREE_KEYWORDS
            + r"(?:\s+(?:for|of|on|to|at)\s+(?:[\w.@\\$'-]{1,64}\s+){0,3}?[\w.@\\$'-]{1,64})?\s*"
            + _COPULA
            + r"\s*[:=]?\s*"
            + _VALUE
        ),
        strong=False,
        check=lambda m, line: (
            _strong_or_digits(m.group("v"), digits=m.group("k").lower() == "passcode")
            or _plain_word(m.group("v"))
        ),
        kind_of=lambda m: "password" if m.group("k").lower().startswith(("pass", "pw", "psk")) else "secret",
    ),
    # "reset jdoe's password to X", "set the wifi passphrase to X".
    _Rule(
        "password",
        ("pass", "pw", "pin"),
        re.compile(
            r"(?i)\b(?:set|reset|changed?|updated?|made)\s+(?:the\s+|his\s+|her\s+|their\s+|its\s+|[\w.-]{1,64}'s\s+)?"
            r"(?:[\w-]{1,64}\s+){0,2}?(?:" + _PASSWORD_WORDS + r"|pin)\s+(?:to|as|=|:)\s+" + _VALUE
        ),
    ),
    # "temporary password Summer2025!", "pw Hunter22", "WPA2 key X".
    _Rule(
        "password",
        ("pass", "pw", "key", "psk"),
        re.compile(
            r"(?i)\b(?:" + _PASSWORD_WORDS + r"|(?:wi-?fi|wpa2?|network|security)\s+key|psk)\s+"
            r"(?P<v>[^\s\"'/-][^\s\"']{5,511})"
        ),
        minimum=6,
        check=lambda m, line: any(not c.isalpha() for c in m.group("v")),
    ),
    # "login jdoe / X", "creds: admin / X".
    _Rule(
        "password",
        ("cred", "login", "logon", "sign", "log in"),
        re.compile(
            r"(?i)\b(?:creds?|credentials|login|logon|sign[- ]?in|log\s+in\s+(?:as|with))\b"
            r"(?:\s+(?:for|to|on|of|at)\s+(?:[\w.'-]{1,64}\s+){0,4}?)?\s*(?:is|are|were|:|=|with|as)?"
            r"\s*[\w.@\\-]{2,64}\s*(?:/|\s:\s|\|)\s*(?P<v>[^\s\"']{1,512})"
        ),
    ),
    # "PIN 4821", "pin code: 0000".
    _Rule(
        "pin",
        ("pin",),
        re.compile(
            r"(?i)\bpin(?![a-z])(?:\s*(?:code|number|no\.?|#))?\s*(?:is|was|:|=|-|of|to)?\s*(?P<v>\d{4,8})\b"
        ),
        strong=False,
    ),
    # "the code is 739201", "verification code 482913"; not error or exit codes.
    _Rule(
        "one_time_code",
        ("code",),
        re.compile(
            r"(?i)(?:\b(?P<q>[a-z0-9-]{1,40})\s+)?code\s*(?P<c>is|was|:|=)?\s*(?P<v>\d{4,10}|\d{3}[- ]\d{3})\b"
        ),
        strong=False,
        check=_code_ok,
    ),
    # Switches: -Password X, --token=X, -pw X, /pass:X, /p:X, /rp X.
    _Rule(
        "password",
        (
            "-pass",
            "-pw",
            "-secret",
            "-token",
            "-api",
            "-client",
            "-access",
            "-auth",
            "-sas",
            "/pass",
            "/pw",
            "/p:",
            "/rp",
        ),
        re.compile(
            r"(?i)(?<![\w/-])(?:--?(?P<k>password|passwd|pass|pwd|pw|passphrase|secret|token|api-?key|apikey"
            r"|client-?secret|access-?key|secret-?key|auth-?token|sas)(?:[=:]|\s+)"
            r"|/(?P<w>password|pass|pwd|pw|p|rp)(?::|(?<=rp)\s+))"
        ),
        strong=False,
        parse=True,
        check=lambda m, line: line[m.end() : m.end() + 1] not in ("-", "/", "*", "$", "("),
        kind_of=lambda m: _keyword_kind_word(m.group("k") or m.group("w")),
    ),
    # psexec/paexec/sshpass/winrs/docker login -p X; mysql -pX.
    _Rule(
        "password",
        ("psexec", "paexec", "sshpass", "winrs", "mysql", "login"),
        re.compile(
            r"(?i)\b(?:psexec|paexec|sshpass|winrs|docker\s+login|podman\s+login)(?:\.exe)?\b[^\n]{0,300}?(?<!\S)-p[:\s]\s*"
            r"|\bmysql(?:dump|admin)?\b[^\n]{0,300}?(?<!\S)-p(?=[^\s-])"
        ),
        strong=False,
        parse=True,
    ),
    # curl -u user:X, smbclient -U user%X.
    _Rule(
        "password",
        ("-u",),
        re.compile(
            r"(?<!\S)(?:-u|--user)\s+[\"']?[^\s:\"']{1,256}:(?P<v>[^\s\"']{1,512})|(?<!\S)-U\s+[^\s%]{1,256}%(?P<w>\S{1,512})"
        ),
        strong=False,
    ),
    # echo X | runas / sudo -S / passwd --stdin / chpasswd.
    _Rule(
        "password",
        ("echo",),
        re.compile(
            r"(?i)\becho\s+"
            + _VALUE
            + r"\s*\|\s*(?:runas|sudo\s+-s|passwd\b|chpasswd|psexec|docker\s+login|kinit)"
        ),
        strong=False,
    ),
    # ConvertTo-SecureString "X"; NetworkCredential("user", "X").
    _Rule(
        "password",
        ("securestring", "credential("),
        re.compile(
            r"(?i)convertto-securestring\s+(?:-string\s+)?(?P<q>[\"'])(?P<v>[^\"'\n]{1,512})(?P=q)"
            r"|(?:networkcredential|pscredential)\s*\(\s*([\"'])[^\"'\n]{0,256}\3\s*,\s*([\"'])(?P<w>[^\"'\n]{1,512})\4"
        ),
        strong=False,
        minimum=1,
    ),
    # <Password>X</Password>, unattend.xml's <Password><Value>X</Value>.
    _Rule(
        "password",
        ("password", "pwd>", "secret", "apikey", "api_key", "token"),
        re.compile(
            r"(?i)<(?:\w{1,40}:)?(?:\w{0,40}password|pwd|secret|apikey|api_key|token)\b[^>]{0,200}>\s*(?:<value>)?(?P<v>[^<\s][^<]{0,511}?)\s*</"
        ),
        strong=False,
        minimum=1,
    ),
    # Registry values: Set-ItemProperty … -Name DefaultPassword -Value X;
    # reg add … /v DefaultPassword … /d X.
    _Rule(
        "password",
        ("-value", "/d"),
        re.compile(
            r"(?i)(?:-name\s+[\"']?\w{0,40}(?:password|pwd|secret|token|apikey)\w{0,40}[\"']?\s+(?:-type\s+\w{1,20}\s+)?-value\s+"
            r"|/v\s+[\"']?\w{0,40}(?:password|pwd|secret|token|apikey)\w{0,40}[\"']?\s+(?:/t\s+\w{1,20}\s+)?/d\s+)"
        ),
        strong=False,
        parse=True,
    ),
    # .NET settings: <add key="SmtpPassword" value="X"/>.
    _Rule(
        "password",
        ("value=",),
        re.compile(
            r"(?i)\bkey\s*=\s*\"[^\"]{0,100}?(?:password|pwd|secret|apikey|api_key|token|connectionstring)[^\"]{0,100}\"\s+"
            r"value\s*=\s*\"(?P<v>[^\"]{1,512})\""
        ),
        strong=False,
        minimum=1,
    ),
    # scheme://user:X@host.
    _Rule(
        "password",
        ("://",),
        re.compile(r"(?i)\b[a-z][a-z0-9+.-]{1,20}://[^\s:/@'\"]{1,256}:(?P<v>[^\s@/'\"]{1,256})@"),
        strong=False,
        minimum=1,
    ),
    # ?sig=X, &access_token=X, ?api_key=X.
    _Rule(
        "token",
        ("token=", "key=", "sig=", "signature=", "password=", "pwd=", "secret=", "code="),
        re.compile(
            r"(?i)[?&;](?P<k>access_token|id_token|refresh_token|token|api_key|apikey|api-key|key|sig|signature"
            r"|password|pwd|secret|client_secret|code)=(?P<v>[^&\s#\"'<>]{1,1024})"
        ),
        strong=False,
        check=lambda m, line: (
            m.group("k").lower() not in ("key", "code", "sig", "signature")
            or (len(m.group("v")) >= 16 and any(c.isdigit() for c in m.group("v")))
        ),
        kind_of=lambda m: _keyword_kind_word(m.group("k")),
    ),
    # Authorization: Bearer X / Basic X / token X.
    _Rule(
        "bearer_token",
        ("bearer", "basic", "token", "digest"),
        re.compile(r"(?i)\b(?P<k>bearer|basic|digest|token)\s+(?P<v>[A-Za-z0-9\-._~+/]{8,4096}=*)"),
        strong=False,
        check=lambda m, line: any(c.isdigit() for c in m.group("v")) or len(m.group("v")) >= 24,
        kind_of=lambda m: "basic_auth" if m.group("k").lower() == "basic" else "bearer_token",
    ),
    # X-Api-Key: X and the like.
    _Rule(
        "api_key",
        ("key:", "token:"),
        re.compile(
            r"(?i)\b(?:x-api-key|api-key|x-auth-token|ocp-apim-subscription-key|x-functions-key)\s*:\s*(?P<v>\S{1,512})"
        ),
        strong=False,
    ),
]


def _keyword_kind_word(word: str) -> str:
    word = word.lower().replace("-", "_")
    if word in ("p", "rp", "w") or word.startswith("pass") or word in ("pwd", "pw"):
        return "password"
    if word in ("sig", "signature", "sas"):
        return "sas_signature"
    if word == "code":
        return "one_time_code"
    if "token" in word:
        return "token"
    if "key" in word:
        return "api_key"
    return "secret"


# Known shapes: (kind, anchor, pattern); the value is ``v`` or the whole match.
_SHAPES: list[tuple[str, tuple[str, ...], re.Pattern[str]]] = [
    (
        "jwt",
        ("eyj",),
        re.compile(r"\beyJ[A-Za-z0-9_-]{5,4096}\.[A-Za-z0-9_-]{5,4096}\.[A-Za-z0-9_-]{0,4096}"),
    ),
    (
        "aws_access_key",
        ("akia", "asia", "a3t", "abia", "acca"),
        re.compile(r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    ),
    (
        "aws_secret_key",
        ("aws",),
        re.compile(
            r"(?i)aws.{0,20}?(?:secret|key).{0,20}?[=:\s\"']+(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
        ),
    ),
    (
        "azure_storage_key",
        ("accountkey",),
        re.compile(r"(?i)AccountKey\s*=\s*(?P<v>[A-Za-z0-9+/]{40,88}={0,2})"),
    ),
    (
        "azure_sas_signature",
        ("sharedaccesssignature",),
        re.compile(r"(?i)SharedAccessSignature\s*=\s*(?P<v>[^;\s\"']+)"),
    ),
    (
        "azure_client_secret",
        ("q~",),
        re.compile(r"(?<![\w~.-])[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}(?![\w~.-])"),
    ),
    ("gcp_api_key", ("aiza",), re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![\w-])")),
    ("gcp_oauth_secret", ("gocspx",), re.compile(r"\bGOCSPX-[A-Za-z0-9_-]{20,}")),
    ("google_oauth_token", ("ya29.",), re.compile(r"\bya29\.[0-9A-Za-z_-]{20,}")),
    (
        "github_token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
    ),
    (
        "gitlab_token",
        ("glpat-", "gldt-", "glft-", "glrt-", "glsoat-", "glcbt-", "glptt-"),
        re.compile(r"\bgl(?:pat|dt|ft|rt|soat|cbt|ptt)-[A-Za-z0-9_-]{20,}"),
    ),
    ("slack_token", ("xox",), re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    (
        "slack_webhook",
        ("hooks.slack.com",),
        re.compile(r"hooks\.slack\.com/services/(?P<v>[A-Za-z0-9_/]{20,})"),
    ),
    ("anthropic_key", ("sk-ant-",), re.compile(r"\bsk-ant-[A-Za-z0-9_-]{16,}")),
    ("openai_key", ("sk-",), re.compile(r"\bsk-(?!ant-)(?:proj-)?[A-Za-z0-9_-]{16,}")),
    ("stripe_key", ("_live_", "_test_"), re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}")),
    ("sendgrid_key", ("sg.",), re.compile(r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}")),
    ("npm_token", ("npm_",), re.compile(r"\bnpm_[A-Za-z0-9]{36}\b")),
    ("recovery_code", ("-",), re.compile(r"\b\d{6}(?:-\d{6}){7}\b")),  # BitLocker recovery key
    (
        "product_key",
        ("-",),
        re.compile(r"\b(?=[A-Z0-9-]{0,28}\d)(?=[A-Z0-9-]{0,28}[A-Z])[A-Z0-9]{5}(?:-[A-Z0-9]{5}){4}\b"),
    ),
]
# BitLocker recovery keys and product keys: groups of digits or letters.
_GROUPED = re.compile(r"\d{6}-\d{6}-|[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}-")

# Whole blocks of key material (multi-line): PEM (also inside JSON strings,
# with literal \n), PuTTY's Private-Lines.
_PEM = re.compile(
    r"-{4,5} ?BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)? ?-{4,5}"
    r"(?:.*?-{4,5} ?END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)? ?-{4,5}|[A-Za-z0-9+/=\s\\:,-]*)",
    re.S,
)
_PUTTY = re.compile(
    r"Private-Lines:[ \t]*\d+[ \t]*\n(?P<v>(?:^[A-Za-z0-9+/=]+[ \t]*$\n?)+)|Private-MAC:[ \t]*(?P<w>[0-9a-f]{20,})",
    re.M,
)

# Recovery/backup code lists: every code-like word after the phrase, on its line.
_CODE_LIST = re.compile(r"(?i)\b(?:recovery|backup|scratch)\s+(?:codes?|keys?|passwords?)\b")
_CODE_WORD = re.compile(
    r"(?<![\w-])(?=[\w-]{0,64}\d)[A-Za-z0-9]{3,64}(?:[- ][A-Za-z0-9]{3,64}){0,7}(?![\w-])"
)
# At most this many words of one command line (or code list) are read.
_WORDS = 24
# `net use` / `net user` command lines: their bare words after the command.
_NET = re.compile(r"(?i)\bnet(?:\.exe)?\s+(?P<cmd>use|user)\b")
_WORD = re.compile(r"\"[^\"\n]{0,512}\"|\S+")


def _net_command(line: str, low: str, offset: int, emit: Emit) -> None:
    """``net use [drive] \\\\host\\share [password] [/user:x]`` and ``net user
    name [password] [/switches]``: the password is the word after the share
    (``use``) or the account (``user``). Where the command is not at the start
    of a line (prose about it) the word must look like a password."""
    commands = list(_NET.finditer(line))
    for match, following in zip(commands, [*commands[1:], None], strict=False):
        before = line[: match.start()].rstrip()
        command = not before or before.endswith((">", "&", "|", "$", "`", ":", ";"))
        expect = "account" if match.group("cmd").lower() == "user" else "share"
        words = _WORD.finditer(line, match.end(), following.start() if following else len(line))
        for word in itertools.islice(words, _WORDS):
            token = word.group(0)
            if token in ("&&", "&", "|", "||", ";", ">", ">>") or token.startswith(("&", "|", ">")):
                break
            if token.startswith("/") or "=" in token or re.fullmatch(r"[A-Za-z]:|\*", token):
                continue
            if expect == "share":
                expect = "password" if token.startswith("\\\\") or "://" in token else expect
                continue
            if expect == "account":
                expect = "password"
                continue
            start, end = word.span()
            if token.startswith('"'):
                start, end = start + 1, end - 1
            if plausible(line[start:end], strong=not command, minimum=1 if command else 4):
                emit("password", offset + start, offset + end)
            break


def _code_lists(line: str, low: str, offset: int, emit: Emit) -> None:
    lists = list(_CODE_LIST.finditer(line))
    for match, following in zip(lists, [*lists[1:], None], strict=False):
        words = _CODE_WORD.finditer(line, match.end(), following.start() if following else len(line))
        for word in itertools.islice(words, _WORDS):
            value = word.group(0)
            if len(value.replace("-", "").replace(" ", "")) >= 6 and not _INNOCENT.match(value):
                emit("recovery_code", offset + word.start(), offset + word.end())


def lowered(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """``pattern`` without IGNORECASE, for lines in lower case (six times
    faster in ``re``), when its literals are all lower case; else None."""
    if not pattern.flags & re.IGNORECASE:
        return None
    source = pattern.pattern.replace("(?i)", "", 1)
    literal = re.sub(r"\\.|\[(?:\\.|[^\]])*\]|\?P<\w+>|\?P=\w+", "", source)
    if any(c.isupper() for c in literal):
        return None
    return re.compile(source, pattern.flags & ~re.IGNORECASE)


class _Original:
    """A match found in the lower-case line, read from the original one."""

    __slots__ = ("_line", "_match")

    def __init__(self, match: re.Match[str], line: str) -> None:
        self._match = match
        self._line = line

    def group(self, name: str | int = 0) -> str | None:
        start, end = self._match.span(name)
        return None if start < 0 else self._line[start:end]

    def span(self, name: str | int = 0) -> tuple[int, int]:
        return self._match.span(name)

    def start(self, name: str | int = 0) -> int:
        return self._match.start(name)

    def end(self, name: str | int = 0) -> int:
        return self._match.end(name)


class _Apply:
    """A rule as a check's scan: on the lower-case line without IGNORECASE
    when its pattern allows (see ``lowered``)."""

    __slots__ = ("_lowered", "_rule")

    def __init__(self, rule: _Rule) -> None:
        self._rule = rule
        self._lowered = lowered(rule.pattern)

    def __call__(self, line: str, low: str, offset: int, emit: Emit) -> None:
        rule = self._rule
        matches = self._lowered.finditer(low) if self._lowered is not None else rule.pattern.finditer(line)
        for found in matches:
            match: Any = _Original(found, line) if self._lowered is not None else found
            if rule.check is not None and not rule.check(match, line):
                continue
            if rule.parse:
                start, end = take_value(line, match.end(), stop=rule.stop)
            else:
                start, end = match.span("v" if match.group("v") is not None else "w")
                if (
                    line[start : start + 1] in ("'", '"')
                    and end - start >= 2
                    and line[end - 1] == line[start]
                ):
                    start, end = start + 1, end - 1
            if plausible(line[start:end], strong=rule.strong, minimum=rule.minimum):
                emit(
                    rule.kind_of(match) if rule.kind_of is not None else rule.kind,
                    offset + start,
                    offset + end,
                )


Scan = Callable[[str, str, int, Emit], None]  # (line, the line in lower case, offset, emit)


def _shape(kind: str, pattern: re.Pattern[str]) -> Scan:
    group = "v" if "v" in pattern.groupindex else 0

    def scan(line: str, low: str, offset: int, emit: Emit) -> None:
        for match in pattern.finditer(line):
            start, end = match.span(group)
            emit(kind, offset + start, offset + end)

    return scan


@dataclass(frozen=True, slots=True)
class Check:
    """``scan(line, low, offset, emit)`` runs on the lines that hold one of
    ``anchors`` (lower-case substrings) or a match of ``anchor_pattern``."""

    scan: Scan
    anchors: tuple[str, ...] = ()
    anchor_pattern: re.Pattern[str] | None = None
    windowed: bool = False  # long lines in overlapping windows (see _WINDOW)


class Lines:
    """A text's lines, and which of them hold an anchor: each anchor is looked
    for in the whole text (``str.find``), so a check costs nothing on the
    lines that cannot hold what it looks for."""

    def __init__(self, text: str, low: str) -> None:
        self.text = text
        self.low = low
        self.starts = [0]
        at = text.find("\n")
        while at != -1:
            self.starts.append(at + 1)
            at = text.find("\n", at + 1)

    def line(self, index: int) -> tuple[int, str, str]:
        """The line's offset, the line, and the line in lower case."""
        start = self.starts[index]
        end = self.starts[index + 1] - 1 if index + 1 < len(self.starts) else len(self.text)
        return start, self.text[start:end], self.low[start:end]

    def index(self, at: int) -> int:
        return bisect.bisect_right(self.starts, at) - 1

    def holding(self, anchor: str) -> set[int]:
        """The lines that hold ``anchor`` (lower case)."""
        found: set[int] = set()
        at = self.low.find(anchor)
        while at != -1:
            index = self.index(at)
            found.add(index)
            if index + 1 == len(self.starts):
                break
            at = self.low.find(anchor, self.starts[index + 1])  # one hit per line is enough
        return found

    def matching(self, pattern: re.Pattern[str]) -> set[int]:
        """The lines that hold a match of ``pattern``."""
        found: set[int] = set()
        match = pattern.search(self.text)
        while match is not None:
            index = self.index(match.start())
            found.add(index)
            if index + 1 == len(self.starts):
                break
            match = pattern.search(self.text, self.starts[index + 1])
        return found


# A windowed check reads a long line in windows that overlap by more than a
# secret is long: a pattern that backtracks over a line (some of
# detect-secrets') then costs the window's length squared at worst, never the
# line's. FlowPilot's own rules are bounded and read whole lines.
_WINDOW = 1024
_OVERLAP = 384


class Detector:
    """Checks, run on the lines that hold their anchors. One pass over the
    anchors finds which checks have anything to do; a text holding none costs
    that pass only (the logs' path: a few microseconds for a short line)."""

    def __init__(self, checks: Iterable[Check]) -> None:
        self.checks = list(checks)
        self._by_anchor: dict[str, list[int]] = {}
        self._by_pattern: dict[re.Pattern[str], list[int]] = {}
        for number, check in enumerate(self.checks):
            for anchor in check.anchors:
                self._by_anchor.setdefault(anchor, []).append(number)
            if check.anchor_pattern is not None:
                self._by_pattern.setdefault(check.anchor_pattern, []).append(number)
        anchors = sorted(self._by_anchor, key=len)
        # The anchors that contain no other: when none is in a text, no anchor is.
        self._cover = tuple(a for i, a in enumerate(anchors) if not any(b in a for b in anchors[:i]))

    def find(self, text: str) -> list[Finding]:
        """The findings in ``text`` (key blocks included), in order, overlapping
        ones joined."""
        found: list[Finding] = []

        def emit(kind: str, start: int, end: int) -> None:
            found.append(Finding(kind, start, end))

        if not text:
            return found
        scan_blocks(text, emit)
        lines = Lines(text, _lower(text))
        todo = self._todo(lines)
        for number in sorted(todo):
            scan = self.checks[number].scan
            for index in sorted(todo[number]):
                offset, line, low = lines.line(index)
                if not self.checks[number].windowed or len(line) <= _WINDOW:
                    scan(line, low, offset, emit)
                    continue
                for start in range(0, len(line) - _OVERLAP, _WINDOW - _OVERLAP):
                    end = start + _WINDOW
                    scan(line[start:end], low[start:end], offset + start, emit)
        return merge(found)

    def _todo(self, lines: Lines) -> dict[int, set[int]]:
        """Check number → the lines it must scan."""
        todo: dict[int, set[int]] = {}
        if any(a in lines.low for a in self._cover):
            for anchor, numbers in self._by_anchor.items():
                if anchor in lines.low:
                    holding = lines.holding(anchor)
                    for number in numbers:
                        todo.setdefault(number, set()).update(holding)
        for pattern, numbers in self._by_pattern.items():
            matching = lines.matching(pattern)
            for number in numbers if matching else ():
                todo.setdefault(number, set()).update(matching)
        return todo


def _lower(text: str) -> str:
    """``text`` in lower case, letter for letter (a letter whose lower case is
    longer, such as İ, is kept as it is, so offsets stay the same)."""
    low = text.lower()
    if len(low) != len(text):
        low = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    return low


CHECKS: list[Check] = [
    *(Check(_Apply(rule), rule.anchors) for rule in _RULES),
    *(Check(_shape(kind, pattern), anchors) for kind, anchors, pattern in _SHAPES if anchors != ("-",)),
    *(
        Check(_shape(kind, pattern), anchor_pattern=_GROUPED)
        for kind, anchors, pattern in _SHAPES
        if anchors == ("-",)
    ),
    Check(_net_command, ("net",)),
    Check(_code_lists, ("recovery", "backup", "scratch")),
]


def scan_blocks(text: str, emit: Emit) -> None:
    """Multi-line key material: PEM blocks and PuTTY keys."""
    if "PRIVATE KEY" in text:
        for match in _PEM.finditer(text):
            end = match.end()
            while end > match.start() and text[end - 1].isspace():
                end -= 1
            emit("private_key", match.start(), end)
    if "Private-" in text:
        for match in _PUTTY.finditer(text):
            emit("private_key", *match.span("v" if match.group("v") is not None else "w"))


def merge(found: Iterable[Finding]) -> list[Finding]:
    """Findings in order, overlapping ones joined (the first's kind kept)."""
    merged: list[Finding] = []
    for finding in sorted(found, key=lambda f: (f.start, -f.end)):
        if merged and finding.start < merged[-1].end:
            last = merged[-1]
            if finding.end > last.end:
                merged[-1] = Finding(last.kind, last.start, finding.end)
            continue
        if finding.end > finding.start:
            merged.append(finding)
    return merged


OWN = Detector(CHECKS)


def find(text: str) -> list[Finding]:
    """FlowPilot's own rules over ``text``: the findings in order, merged."""
    return OWN.find(text)


def mask(text: str, findings: Iterable[Finding], replacement: Callable[[Finding], str] | None = None) -> str:
    """``text`` with every finding replaced (``MASK`` unless ``replacement``
    says otherwise); ``findings`` in order and not overlapping."""
    parts: list[str] = []
    at = 0
    for finding in findings:
        parts.append(text[at : finding.start])
        parts.append(MASK if replacement is None else replacement(finding))
        at = finding.end
    if not parts:
        return text
    parts.append(text[at:])
    return "".join(parts)


def redact(text: str) -> str:
    """``text`` with what FlowPilot's own rules find replaced by ``MASK``."""
    return mask(text, find(text)) if text else text
