"""Where a workflow's outbound request will really go, checked against the allowed hosts.

The ``http`` and ``llm`` nodes send requests to URLs a workflow author chose. Before anything
is sent (and again on every redirect hop), :func:`check_outbound_url` decides where the
request will connect to and whether that host may be reached. The rule is simple and strict:

* The URL must be written one plain way: ``http`` or ``https``, then ``//``, then a host and an
  optional port, then ``/path?query#fragment``. Anything some parser could read differently is
  refused, naming the problem: backslashes, whitespace or control characters anywhere; user
  info (``user@``, ``user:pass@``); percent-encoded or non-ASCII host characters; IPv4
  addresses not in canonical dotted-quad form (``2130706433``, ``0x7f.1``, ``0177.0.0.1``,
  ``127.1``); IPv6 zone IDs and IPv4-mapped/-compatible IPv6 addresses; a trailing dot after the
  host (``localhost.``: the same DNS name, another string); an empty host; an empty port or one
  outside 1-65535 or with leading zeros.
* The host is then compared as written (lower-cased; IPv6 compressed) with the allow-list. No
  DNS lookup takes part in the decision: a name on the list is trusted as that name, a name not on
  it is refused even if it resolves to an allowed address (``localhost`` does not match
  ``127.0.0.1``). Since the check never reads DNS there is no gap between a checked address and
  a connected one for DNS rebinding to use; listing a name trusts whoever controls its DNS, so
  list IP literals where that trust is not wanted.
* Finally the URL is prepared as ``requests`` prepares it, and the host ``requests``/urllib3
  will connect to (``urllib.parse`` and ``urllib3.util.parse_url`` of the prepared URL, which is
  what they use) must be the checked one. A disagreement is refused as ambiguous.

Redirects: the ``http`` node follows them by hand (``workflow.nodes.http``), checking every hop
with this module and dropping ``Authorization``/``Cookie``/``Proxy-Authorization`` once a hop
changes scheme, host or port. The LLM client follows none (a 3xx is an error, as in the OpenAI
SDK), so an ``llm`` node's ``apiKey`` only ever goes to its checked ``apiHost``.

Error messages name the problem but never repeat user info, queries or the whole URL (they may
carry keys).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from urllib3.util import parse_url

from .errors import WorkflowError

DEFAULT_PORTS = {"http": 80, "https": 443}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
#: A DNS label: ASCII letters, digits, ``-`` and ``_`` (seen in internal names), 1 to 63 of them.
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f-\xa0\\\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f\u3000\ufeff]")


class OutboundURLError(WorkflowError, ValueError):
    """A URL that may not be reached, or that could be read as more than one destination."""


@dataclass(frozen=True)
class Target:
    """Where a checked URL's request connects to.

    :param scheme: ``http`` or ``https``.
    :param host: a lower-case DNS name, a dotted-quad IPv4 address or a bracketed, compressed IPv6 one.
    :param port: the port connected to (the scheme's default when the URL names none).
    :param url: the URL as ``requests`` will send it.
    """

    scheme: str
    host: str
    port: int
    url: str

    @property
    def origin(self) -> tuple[str, str, int]:
        """Scheme, host and port: a redirect that changes it is a cross-origin hop."""
        return self.scheme, self.host, self.port

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


def _refuse(problem: str) -> OutboundURLError:
    return OutboundURLError(f"URL refused: {problem}")


def canonical_host(host: str) -> str:
    """``host`` (no port) in its one accepted spelling.

    :raises OutboundURLError: naming what makes the host ambiguous.
    """
    if not host:
        raise _refuse("it has no host")
    if host.startswith("[") or host.endswith("]"):
        return _ipv6(host)
    if "%" in host:
        raise _refuse("percent-encoded characters in the host")
    if not host.isascii():
        raise _refuse("non-ASCII characters in the host (write an IDN as its xn-- form)")
    if ":" in host:
        raise _refuse("a ':' in the host (one port at most; an IPv6 address goes in brackets, like [::1])")
    host = host.lower()
    if host.endswith("."):
        raise _refuse("the host ends with a dot; write it without the trailing dot")
    labels = host.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):  # what resolvers (inet_aton) read as an IPv4 address
        return _ipv4(host)
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise _refuse("the host is not a valid DNS name (letters, digits, '-', '_' and dots only)")
    return host


def _ipv4(host: str) -> str:
    parts = host.split(".")
    canonical = len(parts) == 4 and all(
        part.isdigit() and len(part) <= 3 and int(part) <= 255 and (part == "0" or not part.startswith("0"))
        for part in parts
    )
    if not canonical:
        raise _refuse("the host is an IPv4 address in a non-canonical form; write it as four decimal "
                      "numbers like 127.0.0.1")
    return host


def _ipv6(host: str) -> str:
    if not (host.startswith("[") and host.endswith("]")):
        raise _refuse("unbalanced brackets in the host")
    inner = host[1:-1]
    if "%" in inner:
        raise _refuse("an IPv6 zone ID in the host")
    try:
        address = ipaddress.IPv6Address(inner)
    except ValueError:
        raise _refuse("the host is not a valid IPv6 address") from None
    if address.ipv4_mapped is not None or address.sixtofour is not None or (
            address.packed[:12] == bytes(12) and int(address) > 1):
        raise _refuse("the host is an IPv6 address embedding an IPv4 address; write the IPv4 address")
    return f"[{address.compressed}]"


def _port(text: str, scheme: str) -> int:
    if text == "":
        return DEFAULT_PORTS[scheme]
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text.startswith("0")):
        raise _refuse("the port is not a plain number")
    if len(text) > 5:
        raise _refuse("the port is not from 1 to 65535")
    port = int(text)
    if not 1 <= port <= 65535:
        raise _refuse("the port is not from 1 to 65535")
    return port


def character_problem(text: str) -> str | None:
    """What makes ``text`` unsafe in a URL (a backslash, whitespace, a control or invisible character), or None.

    Parsers disagree on these: urllib3 ends the host at a backslash where ``urllib.parse`` does not,
    and ``urllib.parse`` silently drops tabs and newlines.
    """
    bad = _BAD_CHARS.search(text)
    if bad is None:
        return None
    char = bad.group()
    if char == "\\":
        return "a backslash"
    if char == " ":
        return "whitespace"
    if char.isspace():
        return f"whitespace (U+{ord(char):04X})"
    if ord(char) >= 0xA0:
        return f"an invisible character (U+{ord(char):04X})"
    return f"the control character U+{ord(char):04X}"


def parse_outbound_url(url: str) -> Target:
    """Where a request to ``url`` connects, if ``url`` can be read only one way.

    :raises OutboundURLError: naming the problem (never echoing the URL).
    """
    if not isinstance(url, str) or not url:
        raise _refuse("it is empty")
    problem = character_problem(url)
    if problem:
        raise _refuse(f"it contains {problem}")
    found = _SCHEME.match(url)
    scheme = found.group(1).lower() if found else ""
    if scheme not in DEFAULT_PORTS:
        raise _refuse("only http and https URLs may be requested")
    rest = url[found.end():] if found else url
    if not rest.startswith("//"):
        raise _refuse(f'"{scheme}:" must be followed by "//" and a host')
    authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
    if "@" in authority:
        raise _refuse("it contains user info (user@ or user:password@); send credentials in headers")
    host_text, port_text = authority, ""
    bracket = authority.rfind("]")
    colon = authority.rfind(":")
    if colon > bracket:
        host_text, port_text = authority[:colon], authority[colon + 1:]
        if port_text == "":
            raise _refuse("the port is empty")
    host = canonical_host(host_text)
    port = _port(port_text, scheme)
    target = Target(scheme, host, port, _prepared(url))
    _same_as_the_http_library(target)
    return target


def _prepared(url: str) -> str:
    try:
        return str(requests.Request("GET", url).prepare().url)
    except (requests.RequestException, ValueError) as exc:
        raise _refuse(f"the HTTP library cannot read it ({type(exc).__name__})") from None


def _same_as_the_http_library(target: Target) -> None:
    """The host and port requests' adapter (``urlparse``) and urllib3 (``parse_url``) will use."""
    try:
        split = urlsplit(target.url)
        seen = {(split.scheme.lower(), (split.hostname or "").lower(), split.port or DEFAULT_PORTS[target.scheme])}
        parsed = parse_url(target.url)
        seen.add(((parsed.scheme or "").lower(), (parsed.host or "").lower(),
                  parsed.port or DEFAULT_PORTS[target.scheme]))
    except ValueError:
        raise _refuse("the HTTP library cannot read its host") from None
    for scheme, host, port in seen:
        host = host[1:-1] if host.startswith("[") else host
        if ":" in host:
            try:
                host = f"[{ipaddress.IPv6Address(host).compressed}]"
            except ValueError:
                raise _refuse("the HTTP library would read another host from it") from None
        if (scheme, host, port) != target.origin:
            raise _refuse("the HTTP library would read another host or port from it")


@functools.lru_cache(maxsize=256)
def parse_allowed_host(entry: str) -> tuple[str, int | None]:
    """An allow-list entry (``host``, ``host:port``, ``[v6]``, ``[v6]:port``, ``v6``) as ``(host, port or None)``.

    :raises OutboundURLError: when the entry is not one of those forms.
    """
    entry = entry.strip()
    host, port = entry, ""
    if entry.startswith("[") and "]:" in entry:
        host, port = entry.rsplit(":", 1)
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    elif ":" in entry and not entry.startswith("["):  # a bare IPv6 address, any port
        host = f"[{entry}]"
    if entry.endswith(":") or port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise OutboundURLError("the port is not a number from 1 to 65535")
    try:
        return canonical_host(host), int(port) if port else None
    except OutboundURLError as exc:
        raise OutboundURLError(str(exc).removeprefix("URL refused: ")) from None


def is_allowed(target: Target, allowed: Iterable[str]) -> bool:
    """True if an entry of ``allowed`` names ``target``'s host (any port) or its host and port."""
    for entry in allowed:
        try:
            host, port = parse_allowed_host(entry)
        except OutboundURLError:
            continue  # the configuration check reports bad entries at start-up
        if host == target.host and port in (None, target.port):
            return True
    return False


def check_outbound_url(url: str, allowed: Iterable[str]) -> Target:
    """Parse ``url`` (:func:`parse_outbound_url`) and require its host to be allowed.

    :raises OutboundURLError: when ``url`` is ambiguous, or its host and port are not allowed.
    """
    target = parse_outbound_url(url)
    if not is_allowed(target, allowed):
        raise OutboundURLError(f'host "{target.authority}" is not allowed; add it to FLOWBRIDGE_ALLOWED_HOSTS '
                               "to let workflows reach it")
    return target
