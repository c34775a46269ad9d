"""``workflow.outbound``: one reading of every outbound URL, the one requests and urllib3 will act on."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import pytest
import requests
from urllib3.util import parse_url

from webapp.config import ConfigError, load_config
from workflow.executor import NodeError, RuntimeSettings
from workflow.outbound import OutboundURLError, Target, check_outbound_url, parse_allowed_host, parse_outbound_url

ALLOWED = ["127.0.0.1:8080", "api.example.com", "[::1]:9000", "internal_llm.svc:8000"]


@pytest.mark.parametrize(("url", "target"), [
    ("http://127.0.0.1:8080/x?q=1#f", ("http", "127.0.0.1", 8080)),
    ("HTTP://API.Example.COM/v1", ("http", "api.example.com", 80)),
    ("https://api.example.com/v1", ("https", "api.example.com", 443)),
    ("https://api.example.com:443/v1", ("https", "api.example.com", 443)),
    ("http://[::1]:9000/", ("http", "[::1]", 9000)),
    ("http://[0:0:0:0:0:0:0:1]:9000/", ("http", "[::1]", 9000)),
    ("http://internal_llm.svc:8000/v1", ("http", "internal_llm.svc", 8000)),
    ("http://127.0.0.1:8080", ("http", "127.0.0.1", 8080)),
    ("http://127.0.0.1:8080?@evil", ("http", "127.0.0.1", 8080)),
    ("http://127.0.0.1:8080#@evil", ("http", "127.0.0.1", 8080)),
    ("http://127.0.0.1:8080/caf\u00e9?q=\u00fc", ("http", "127.0.0.1", 8080)),
    ("http://127.0.0.1:8080/%2e%2e/%40", ("http", "127.0.0.1", 8080)),
])
def test_allowed_urls_and_where_they_go(url: str, target: tuple[str, str, int]) -> None:
    found = check_outbound_url(url, ALLOWED)
    assert found.origin == target
    # the checked host is the one requests' adapter (urlparse) and urllib3 (parse_url) connect to
    prepared = requests.Request("GET", url).prepare().url
    assert found.url == prepared
    assert _address(parse_url(prepared).host) == _address(urlsplit(prepared).hostname) == _address(found.host)


def _address(host: str | None) -> str:
    """A host in one spelling: IPv6 compressed, without brackets; names lower-cased."""
    assert host
    host = host.strip("[]").lower()
    return ipaddress.ip_address(host).compressed if ":" in host else host


@pytest.mark.parametrize(("url", "problem"), [
    ("http://127.0.0.1:9\\@127.0.0.1:8080/", "backslash"),
    ("http://127.0.0.1:8080/a\\b", "backslash"),
    ("http:\\\\127.0.0.1:8080/", "backslash"),
    ("http://u@127.0.0.1:8080/", "user info"),
    ("http://u:p@127.0.0.1:8080/", "user info"),
    ("http://:@127.0.0.1:8080/", "user info"),
    ("http://127.0.0.1:8080@evil/", "user info"),
    ("http://%31%32%37.0.0.1:8080/", "percent-encoded"),
    ("http://api%2eexample.com/", "percent-encoded"),
    ("http://\u0430pi.example.com/", "non-ASCII"),  # Cyrillic a
    ("http://api.example.com\u3002/", "non-ASCII"),
    ("http://2130706433:8080/", "non-canonical"),
    ("http://0x7f000001:8080/", "non-canonical"),
    ("http://0x7f.1:8080/", "non-canonical"),
    ("http://0177.0.0.1:8080/", "non-canonical"),
    ("http://127.0.0.01:8080/", "non-canonical"),
    ("http://127.1:8080/", "non-canonical"),
    ("http://127.0.0.1.1:8080/", "non-canonical"),
    ("http://256.0.0.1:8080/", "non-canonical"),
    ("http://1.2.3.0x4:8080/", "non-canonical"),
    ("http://[::ffff:127.0.0.1]:9000/", "IPv4"),
    ("http://[::127.0.0.1]:9000/", "IPv4"),
    ("http://[2002:7f00:1::]:9000/", "IPv4"),
    ("http://[::1%25lo]:9000/", "zone"),
    ("http://[::1%lo]:9000/", "zone"),
    ("http://[::1:9000/", "brackets"),
    ("http://[not-v6]:9000/", "IPv6"),
    ("http://::1:9000/", "':'"),
    ("http://127.0.0.1:8080:8080/", "':'"),
    ("http://127.0.0.1.:8080/", "dot"),
    ("http://api.example.com./", "dot"),
    ("http://127.0.0.1:/", "port is empty"),
    ("http://127.0.0.1:08080/", "port"),
    ("http://127.0.0.1:73616/", "port"),
    ("http://127.0.0.1:0/", "port"),
    ("http://127.0.0.1:+80/", "port"),
    ("http://127.0.0.1:\uff18\uff10/", "port"),
    ("http://127.0.0.1:8080/a b", "whitespace"),
    (" http://127.0.0.1:8080/", "whitespace"),
    ("http://127.0.0.1:8080/\n", "whitespace"),
    ("http://127.0.0.1:8080/\u00a0", "whitespace"),
    ("http://127.0.0.1:8080/\u200b", "invisible character"),
    ("http://127.0.0.1:8080/\x7f", "control character"),
    ("http://127.0.0.1:8080/\x00", "control character"),
    ("ftp://127.0.0.1:8080/", "only http"),
    ("file:///etc/passwd", "only http"),
    ("javascript:alert(1)", "only http"),
    ("//127.0.0.1:8080/", "only http"),
    ("127.0.0.1:8080", "only http"),
    ("http:/127.0.0.1:8080/", '"//"'),
    ("http:127.0.0.1:8080/", '"//"'),
    ("http:///127.0.0.1:8080/", "no host"),
    ("http://", "no host"),
    ("http://*.example.com/", "DNS name"),
    ("http://-api.example.com/", "DNS name"),
    ("http://a..b/", "DNS name"),
    ("http://.api.example.com/", "DNS name"),
    ("", "empty"),
])
def test_ambiguous_urls_are_refused_naming_the_problem(url: str, problem: str) -> None:
    with pytest.raises(OutboundURLError) as info:
        parse_outbound_url(url)
    message = str(info.value)
    assert message.startswith("URL refused: ") and problem in message
    assert "p@" not in message and "lo]" not in message  # the URL itself is not repeated


@pytest.mark.parametrize("url", [
    "http://localhost:8080/",  # resolves to 127.0.0.1, but it is another name
    "http://127.0.0.2:8080/",
    "http://0.0.0.0:8080/",
    "http://[::1]:8080/",  # 9000 only
    "http://127.0.0.1:8081/",
    "https://127.0.0.1/",
    "http://example.com/",
    "http://api.example.com.evil.test/",
    "http://evilapi.example.com/",
    "http://127.0.0.1.nip.io:8080/",
])
def test_hosts_are_compared_as_written_without_dns(url: str) -> None:
    with pytest.raises(OutboundURLError, match="is not allowed; add it to FLOWBRIDGE_ALLOWED_HOSTS"):
        check_outbound_url(url, ALLOWED)


@pytest.mark.parametrize(("entry", "parsed"), [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    ("API.example.com", ("api.example.com", None)),
    ("[::1]:9000", ("[::1]", 9000)),
    ("[::1]", ("[::1]", None)),
    ("::1", ("[::1]", None)),
    ("localhost", ("localhost", None)),
])
def test_allow_list_entries(entry: str, parsed: tuple[str, int | None]) -> None:
    assert parse_allowed_host(entry) == parsed


@pytest.mark.parametrize("entry", ["127.1", "0x7f.0.0.1", "localhost.", "a@b", "h:0", "h:99999", "h:", "[::1%lo]",
                                   "[::ffff:127.0.0.1]:80", "h\u00e9"])
def test_bad_allow_list_entries_are_start_up_errors(entry: str) -> None:
    with pytest.raises(OutboundURLError):
        parse_allowed_host(entry)
    with pytest.raises(ConfigError, match="FLOWBRIDGE_ALLOWED_HOSTS"):
        load_config(environ={"FLOWBRIDGE_ALLOWED_HOSTS": entry})


def test_settings_allow_the_llm_server_and_fail_nodes_with_node_errors() -> None:
    settings = RuntimeSettings(allowed_hosts=frozenset({"127.0.0.1:8080"}), llm_base_url="http://llm.internal:9/v1")
    assert settings.check_url("http://llm.internal:9/v1/chat/completions") == Target(
        "http", "llm.internal", 9, "http://llm.internal:9/v1/chat/completions")
    with pytest.raises(NodeError, match='host "llm.internal:80" is not allowed'):
        settings.check_url("http://llm.internal/v1")
    with pytest.raises(NodeError, match="^URL refused: it contains a backslash$"):
        settings.check_url("http://127.0.0.1:9\\@127.0.0.1:8080/")
