"""Redaction of secrets in text that leaves for a person or a model.

:func:`find_secrets` returns what was found (a kind and the span of each
secret value); :func:`redact` replaces each with ``[REDACTED]``. Two sources,
merged:

- FlowPilot's own rules (``services.core.sensitive``): secrets as people write
  them in notes and scripts ("the password is X", ``net use … X``, PIN codes,
  recovery codes, credentials in URLs, connection strings, key shapes);
- Yelp's detect-secrets plugins, used as a library: the keyword detector's
  assignment patterns, its known-format detectors (AWS, Azure storage,
  basic-auth URLs, GitHub, GitLab, JWT, Slack, Stripe, SendGrid, npm, PyPI,
  Twilio, Telegram, Discord, Mailchimp, Square, IBM, Cloudant, SoftLayer),
  and its Shannon entropy for random-looking tokens. Its scanning front end
  (files, baselines, global settings, verification over the network) is not
  used: each plugin's patterns run on the lines that hold their anchors.

High entropy is judged only for tokens of 20 characters or more from the
base64 alphabet that mix upper case, lower case and digits (or, from 32
characters, lower case and digits that are not hex), never for hex strings
(hashes, thumbprints), GUIDs, SIDs, versions or paths: those stay.

Applied to everything sent to a model and to every generated note when the
account's ``notes.redact_sensitive`` setting is on (the default), to the facts
an escalated walk sends, and to scripts becoming drafts (``services.library``).
"""

from __future__ import annotations

import re

from detect_secrets.filters import heuristic
from detect_secrets.plugins import keyword
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from services.core import sensitive
from services.core.sensitive import MASK, Finding

__all__ = ["MASK", "Finding", "find_secrets", "redact"]

# Known-format plugins: (kind, lower-case anchors of which a line needs one
# (None: a line with a long token), plugin). Left out: the public-IP detector
# (addresses are what notes are made of), the private-key detector (it finds
# the header line; the block rule masks the whole key) and Artifactory's
# (``AP`` + 9 letters or digits is an ordinary word in upper case).
_PLUGINS: list[tuple[str, tuple[str, ...] | None, RegexBasedDetector]] = [
    ("aws_access_key", ("akia", "asia", "a3t", "abia", "acca", "aws"), AWSKeyDetector()),
    ("azure_storage_key", ("accountkey",), AzureStorageKeyDetector()),
    ("password", ("://",), BasicAuthDetector()),
    ("cloudant_key", ("cloudant", "cl_", "cl-", "clou"), CloudantDetector()),
    ("discord_token", None, DiscordBotTokenDetector()),
    ("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), GitHubTokenDetector()),
    (
        "gitlab_token",
        (
            "glpat-",
            "gldt-",
            "glft-",
            "glsoat-",
            "glrt-",
            "gr1348941",
            "glcbt-",
            "glimt-",
            "glptt-",
            "glagent-",
            "gloas-",
        ),
        GitLabTokenDetector(),
    ),
    ("ibm_cloud_key", ("iam", "ibm", "cloud"), IbmCloudIamDetector()),
    ("ibm_cos_key", ("secret",), IbmCosHmacDetector()),
    ("jwt", ("eyj",), JwtTokenDetector()),
    ("mailchimp_key", ("-us",), MailchimpDetector()),
    ("npm_token", ("_authtoken",), NpmDetector()),
    ("openai_key", ("t3blbkfj",), OpenAIDetector()),
    ("pypi_token", ("pypi-",), PypiTokenDetector()),
    ("sendgrid_key", ("sg.",), SendGridDetector()),
    ("slack_token", ("xox", "hooks.slack.com"), SlackDetector()),
    ("softlayer_key", ("softlayer", "sl_", "sl-"), SoftlayerDetector()),
    ("square_secret", ("sq0csp-",), SquareOAuthDetector()),
    ("stripe_key", ("k_live_",), StripeDetector()),
    ("telegram_token", None, TelegramBotTokenDetector()),
    ("twilio_key", None, TwilioKeyDetector()),
]

# The keyword plugin's assignment patterns (``password = x``, ``api_key: "x"``,
# ``secret "x";``) with the group holding the value, tried where one of its
# keywords starts; its comparison pattern (``"x" == password``) is code, not
# notes, and is left out. Its keywords are lower case, so lines are matched
# in lower case without IGNORECASE (six times faster in ``re``).
_KEYWORD_PATTERNS = [
    (sensitive.lowered(pattern) or pattern, group)
    for pattern, group in {
        **keyword.CONFIG_DENYLIST_REGEX_TO_GROUP,
        **keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
    }.items()
    if pattern is not keyword.PRECEDED_BY_EQUAL_COMPARISON_SIGNS_QUOTES_REQUIRED_REGEX
]
_KEYWORD_START = re.compile("|".join(keyword.DENYLIST))
_KEYWORD_ANCHORS = ("key", "pass", "pwd", "secret", "contrase")

_SUFFIX = re.compile(r"\w*")
_LONG = re.compile(r"[A-Za-z0-9+/_-]{20}")
_TOKEN = re.compile(r"(?<![A-Za-z0-9+/=_.~-])[A-Za-z0-9+/_-]{20,}={0,2}(?![A-Za-z0-9+/=_.~-])")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_SID = re.compile(r"^S-\d-\d+(?:-\d+)+$")
_WORD_RUN = re.compile(r"[a-z]{6,}|[A-Z][a-z]{5,}")
_ENTROPY = Base64HighEntropyString()


def _span(match: re.Match[str]) -> tuple[int, int]:
    """A plugin match's secret: its last group that is not a prefix at the
    start of the match, else the whole match, without the delimiters some
    patterns include (``AccountKey=``, white space, quotes)."""
    for index in range(len(match.groups()), 0, -1):
        if match.group(index) and match.start(index) > match.start():
            return match.span(index)
    start, end = match.span()
    text = match.string
    if "=" in text[start:end] and text[start:end].split("=", 1)[0].isalpha():
        start += text[start:end].index("=") + 1
    while start < end and text[start] in " \t\"':=":
        start += 1
    while end > start and text[end - 1] in " \t\"'":
        end -= 1
    return start, end


def _plugin_value_ok(kind: str, value: str) -> bool:
    if heuristic.is_templated_secret(value) or heuristic.is_prefixed_with_dollar_sign(value):
        return False
    if heuristic.is_sequential_string(value) or heuristic.is_potential_uuid(value):
        return False
    if kind == "jwt":
        return JwtTokenDetector.is_formally_valid(value)
    return sensitive.plausible(value, strong=False, minimum=4)


def _random_looking(token: str) -> bool:
    """A token that looks generated rather than written: long, mixed, no
    English-looking runs, and above the entropy detect-secrets' base64 plugin
    measures for random strings of its length."""
    token = token.rstrip("=")
    if len(token) < 20 or token.startswith("/") or _HEX.match(token) or _SID.match(token):
        return False
    if heuristic.is_potential_uuid(token) or heuristic.is_sequential_string(token):
        return False
    upper = any(c.isupper() for c in token)
    lower = any(c.islower() for c in token)
    digits = sum(c.isdigit() for c in token)
    if upper and lower and digits:
        if len(_WORD_RUN.findall(token)) > 1 or digits < 2:
            return False
        # Random base64 of n characters measures about log2(n) - 0.3.
        threshold = min(4.5, max(3.6, len(token).bit_length() - 1.3))
        return _ENTROPY.calculate_shannon_entropy(token) >= threshold
    if lower and digits >= 4 and not upper and len(token) >= 32 and not _WORD_RUN.search(token):
        return _ENTROPY.calculate_shannon_entropy(token) >= 4.0
    return False


def _plugin_check(kind: str, plugin: RegexBasedDetector) -> sensitive.Scan:
    def scan(line: str, low: str, offset: int, emit: sensitive.Emit) -> None:
        for pattern in plugin.denylist:
            for match in pattern.finditer(line):
                start, end = _span(match)
                if _plugin_value_ok(kind, line[start:end]):
                    emit(kind, offset + start, offset + end)

    return scan


def _keywords(line: str, low: str, offset: int, emit: sensitive.Emit) -> None:
    for start in _KEYWORD_START.finditer(low):
        for pattern, group in _KEYWORD_PATTERNS:
            match = pattern.match(low, start.start())
            if match is None:
                continue
            suffix = _SUFFIX.match(line, match.end(1))
            if not sensitive.keyword_stands_alone(line, match.start(1), suffix.group(0) if suffix else ""):
                continue
            begin, end = sensitive.take_value(line, match.start(group), stop=";,&")
            if sensitive.plausible(line[begin:end], strong=False, minimum=3):
                emit(_keyword_kind(match.group(1)), offset + begin, offset + end)


def _high_entropy(line: str, low: str, offset: int, emit: sensitive.Emit) -> None:
    for match in _TOKEN.finditer(line):
        if _random_looking(match.group(0)):
            emit("high_entropy_string", offset + match.start(), offset + match.end())


def _keyword_kind(word: str) -> str:
    word = word.lower()
    if "pass" in word or word in ("pwd", "contraseña", "contrasena"):
        return "password"
    if "priv" in word:
        return "private_key"
    if word == "secret":
        return "secret"
    return "api_key"


_DETECTOR = sensitive.Detector(
    [
        *sensitive.CHECKS,
        *(
            sensitive.Check(
                _plugin_check(kind, plugin), anchors or (), None if anchors else _LONG, windowed=True
            )
            for kind, anchors, plugin in _PLUGINS
        ),
        sensitive.Check(_keywords, _KEYWORD_ANCHORS, windowed=True),
        sensitive.Check(_high_entropy, anchor_pattern=_LONG),
    ]
)


def find_secrets(text: str) -> list[Finding]:
    """Every secret in ``text``: its kind and the span of its value, in order,
    overlapping findings joined. ``Finding.line(text)`` gives its line."""
    return _DETECTOR.find(text)


def redact(text: str) -> str:
    """``text`` with every secret :func:`find_secrets` finds replaced by ``[REDACTED]``."""
    return sensitive.mask(text, find_secrets(text))
