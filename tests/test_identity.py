"""One identity per registry, and no credentials in registry URLs.

Registries used to be compared by URL text: quick mode with ``http://localhost:P``
for a configured ``http://127.0.0.1:P`` dropped the config's keep rules and took
another lock.  These tests run against a real registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regprune import hookimpl
from regprune.config import Settings, parse_settings
from regprune.engine import Engine, lock_name
from regprune.errors import ConfigError, LockHeld
from regprune.plugin_manager import get_plugin_manager
from regprune.state import State
from regprune.testing import APPROVE_ALL, DEFAULT_REGISTRY, days_ago, make_settings, run_cli
from regprune.urls import check_registry_url, registry_identity

PASSWORD = "s3cr3t-Pa55"


pytestmark = pytest.mark.usefixtures("isolated_cli")


def localhost(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")


# -- identity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "http://127.0.0.1:5000",
        "http://127.0.0.1:5000/",
        "HTTP://LOCALHOST:5000//",
        "http://localhost.:5000",
        "http://127.1.2.3:5000",
        "http://[::1]:5000",
        "http://[0:0:0:0:0:0:0:1]:5000/",
        "http://app.localhost:5000",
        "http://[::ffff:127.0.0.1]:5000",  # IPv4-mapped: the IPv4 address it maps
    ],
)
def test_spellings_of_one_loopback_registry_share_an_identity(spelling):
    assert registry_identity(spelling) == "http://loopback:5000"


def test_an_ipv4_mapped_address_is_its_ipv4_address():
    assert registry_identity("http://[::ffff:10.1.2.3]:5000") == "http://10.1.2.3:5000"


@pytest.mark.parametrize(
    "host",
    ["127.1", "2130706433", "0x7f.0.0.1", "0x7f000001", "0177.0.0.1", "127.000.000.001",
     "999.1.1.1", "1.2.3.4.5", "reg.example.123"],
)  # fmt: skip
def test_an_ipv4_address_in_another_form_is_refused(host):
    """Resolvers take 127.1 or 2130706433 for 127.0.0.1: accepted, one registry would
    have two identities (and keep rules of the configured one would not apply)."""
    with pytest.raises(ValueError, match="four decimal numbers") as caught:
        registry_identity(f"http://{host}:5000")
    assert "\n" not in str(caught.value)


@given(st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=4), st.booleans())
def test_a_numeric_host_is_a_dotted_quad_or_refused(numbers, hexadecimal):
    """Whatever the numeric spelling, a host that parses is the one canonical address."""
    host = ".".join(hex(n) if hexadecimal else str(n) for n in numbers)
    try:
        identity = registry_identity(f"http://{host}:5000")
    except ValueError:
        return
    assert len(numbers) == 4 and not hexadecimal and all(n < 256 for n in numbers)
    address = ".".join(str(n) for n in numbers)
    assert identity in (f"http://{address}:5000", "http://loopback:5000")
    assert address == host


def test_a_url_ending_in_v2_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="without the /v2/ at its end"):
        check_registry_url("http://registry.example.org/v2/")


def test_an_upper_case_scheme_is_taken_as_lower_case():
    assert check_registry_url("HTTPS://Registry.example.org/") == "https://Registry.example.org"


def test_default_ports_and_paths():
    assert registry_identity("https://Registry.Example.ORG") == "https://registry.example.org:443"
    assert registry_identity("https://registry.example.org:443/") == (
        "https://registry.example.org:443"
    )
    assert registry_identity("http://registry.example.org") == "http://registry.example.org:80"
    assert registry_identity("http://r.example:80/a/") != registry_identity("http://r.example/b")
    assert registry_identity("http://r.example") != registry_identity("https://r.example")


def test_two_sections_for_one_registry_are_an_error():
    with pytest.raises(ConfigError) as caught:
        parse_settings(
            {
                "registry": {
                    "a": {"url": "http://127.0.0.1:5000"},
                    "b": {"url": "http://LOCALHOST:5000/"},
                }
            }
        )
    assert "registry.b.url" in caught.value.message
    assert "same registry as registry.a" in caught.value.message


KEEP_RELEASES = """\
[registry.local]
url = "{url}"

[policy.releases]
registry = "local"
repositories = ["ci/*"]
keep_tags = ['^v\\d+\\.\\d+\\.\\d+$']
selectors = [{{ use = "count", keep = 100 }}]
"""


@pytest.mark.parametrize(
    "spell", [localhost, lambda url: url.replace("127.0.0.1", "[::ffff:127.0.0.1]")]
)
def test_quick_mode_through_another_spelling_keeps_configured_keep_rules(
    registry_server, pusher, tmp_path, capsys, spell
):
    pusher.push_image("ci/app", ["v1.0.0"], created=days_ago(400))
    pusher.push_image("ci/app", ["build-1"], created=days_ago(300))
    (tmp_path / "regprune.toml").write_text(KEEP_RELEASES.format(url=registry_server.url))
    state = str(tmp_path / "state.db")

    code, out, err = run_cli(
        capsys, "--state", state, "plan", "--json",
        "--registry", spell(registry_server.url) + "/",
        "--repo", "ci/*", "--older-than", "14d",
    )  # fmt: skip

    assert code == 0, err
    plan = json.loads(out)
    assert plan["registry"] == "local"  # matched by identity, used by its name
    deleted = {tag for item in plan["delete"] for tag in item["tags"]}
    kept = {tag: item["reasons"] for item in plan["keep"] for tag in item["tags"]}
    assert deleted == {"build-1"}
    assert "v1.0.0" in kept
    assert any("policy releases" in reason for reason in kept["v1.0.0"])


class GcDuringApply:
    """A plugin: while an apply deletes, try a gc of the same registry by another name."""

    def __init__(self, state_path: Path, url: str) -> None:
        self.state_path, self.url = state_path, url
        self.outcomes: list[str] = []

    @hookimpl
    def item_deleted(self, plan, item, state) -> None:
        settings = make_settings(self.url, registry_options={"gc": {"command": ["true"]}})
        other = Engine(
            settings, State(self.state_path), manager=get_plugin_manager(load_entrypoints=False)
        )
        try:
            other.gc(DEFAULT_REGISTRY)
            self.outcomes.append("gc ran")
        except LockHeld as exc:
            self.outcomes.append(f"refused: {exc.message}")
        finally:
            other.close()
            other.state.close()


@pytest.mark.parametrize("configured", [False, True], ids=["bare-url", "configured"])
def test_gc_through_another_spelling_refuses_while_apply_holds_the_lock(
    registry_server, pusher, tmp_path, configured
):
    pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    state_path = tmp_path / "state.db"
    quick_url = localhost(registry_server.url) + "/"
    # The apply's engine knows the registry only by its quick-mode URL ("bare-url"),
    # or by a config name of its own ("configured"); gc uses the 127.0.0.1 spelling.
    data = {"registry": {"mine": {"url": quick_url}}} if configured else {}
    registry = "mine" if configured else quick_url.rstrip("/")
    data["policy"] = {
        "quick": {
            "registry": registry,
            "repositories": ["ci/*"],
            "selectors": [{"use": "age", "older_than": "14d"}],
        }
    }
    parsed = parse_settings(data) if configured else None
    if parsed is None:
        # Quick mode names an unconfigured registry by its URL, as resolve_registry does.
        data["registry"] = {}
        data["policy"]["quick"]["registry"] = "local"
        parsed = parse_settings({**data, "registry": {"local": {"url": quick_url}}})
        quick = parsed.policy["quick"].model_copy(update={"registry": registry})
        parsed = Settings().with_registry(registry, parsed.registry["local"])
        parsed = parsed.with_policy("quick", quick)
    manager = get_plugin_manager(load_entrypoints=False)
    plugin = GcDuringApply(state_path, registry_server.url)
    manager.register(plugin)
    engine = Engine(parsed, State(state_path), manager=manager)
    try:
        plan = engine.plan("quick")
        if not configured:
            # As a later `regprune apply` sees it: the URL is in no config.
            engine.settings = engine.settings.model_copy(update={"registry": MappingProxyType({})})
            engine.close()
        result = engine.apply(plan.id, context=APPROVE_ALL)
    finally:
        engine.close()
        engine.state.close()
    assert result.status == "done"
    assert len(plugin.outcomes) == 1
    assert plugin.outcomes[0].startswith("refused: registry 'http://loopback:"), plugin.outcomes


def test_engine_lock_name_follows_identity():
    settings = make_settings("http://127.0.0.1:5000/")
    engine = Engine(settings, State(":memory:"), manager=get_plugin_manager(load_entrypoints=False))
    assert (
        engine.lock_name(DEFAULT_REGISTRY)
        == lock_name("http://localhost:5000")
        == "http://loopback:5000"
    )
    assert engine.lock_name("gone", "HTTP://[::1]:5000") == "http://loopback:5000"
    with pytest.raises(ConfigError, match="unknown registry 'gone'"):
        engine.lock_name("gone")


# -- user info in URLs ---------------------------------------------------------------------


def _assert_refused_without_password(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert PASSWORD not in err
    assert "username and password" in err
    for text in expected:
        assert text in err


def test_config_url_with_user_info_is_refused(registry_server, tmp_path, capsys):
    url = registry_server.url.replace("://", f"://ci:{PASSWORD}@")
    (tmp_path / "regprune.toml").write_text(KEEP_RELEASES.format(url=url))
    state = tmp_path / "state.db"
    code, _, err = run_cli(capsys, "--state", str(state), "plan")
    _assert_refused_without_password(code, err, "registry.local.url")
    assert not state.exists()


@pytest.mark.parametrize("command", ["plan", "run", "ls"])
def test_quick_mode_url_with_user_info_is_refused(registry_server, tmp_path, capsys, command):
    url = registry_server.url.replace("://", f"://ci:{PASSWORD}@")
    state = tmp_path / "state.db"
    argv = ["--state", str(state), command, "--registry", url]
    if command != "ls":
        argv += ["--repo", "ci/*", "--older-than", "1d"]
    code, _, err = run_cli(capsys, *argv)
    _assert_refused_without_password(code, err, "--registry")
    assert PASSWORD not in (state.read_bytes().decode("latin-1") if state.exists() else "")


_PASSWORDS = st.text(
    alphabet=st.characters(codec="ascii", exclude_characters="/?#@\x00"), min_size=1, max_size=20
)


@settings(max_examples=200, deadline=None)
@given(user=_PASSWORDS, password=_PASSWORDS, rest=st.sampled_from(["h:5000", "[::1", "h:99999/x"]))
def test_user_info_is_never_echoed(user, password, rest):
    url = f"http://{user}:{password}@{rest}"
    with pytest.raises(ValueError) as caught:
        check_registry_url(url)
    assert f"{user}:{password}" not in str(caught.value)
    assert "\n" not in str(caught.value)


_HOSTS = st.one_of(
    # A name's last label is not numeric (that would be an IPv4 address in another form).
    st.from_regex(r"\A([a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\.){0,2}[a-z][a-z0-9]{0,7}\Z"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
)


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "Https"]),
    host=_HOSTS,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    slashes=st.integers(0, 3),
)
def test_identity_ignores_case_default_port_and_slashes(scheme, host, port, slashes):
    default = 80 if scheme.lower() == "http" else 443
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}{'/' * slashes}"
    identity = registry_identity(url)
    assert identity == registry_identity(f"{scheme.lower()}://{host.upper()}:{port or default}")
    assert check_registry_url(url) == f"{scheme.lower()}{url[len(scheme) :]}".rstrip("/")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_any_url_text_is_valid_or_one_line_value_error(text):
    for candidate in (text, f"http://{text}", f"https://h:{text}"):
        try:
            identity = registry_identity(candidate)
        except ValueError as exc:
            assert "\n" not in str(exc)
        else:
            assert identity.startswith(("http://", "https://"))
