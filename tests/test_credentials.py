"""credentials_for: the regprune config first, then Docker's config.json and its helpers."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from regprune.config import RegistrySettings
from regprune.errors import UsageError
from regprune.registry import Credentials, credentials_for


def settings(url: str = "https://registry.example.org:5000", **kw: object) -> RegistrySettings:
    return RegistrySettings(url=url, **kw)  # type: ignore[arg-type]


def write_config(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on PATH for fake docker-credential-* programs."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ.get('PATH', '')}")
    return directory


def make_helper(directory: Path, name: str, script: str) -> Path:
    path = directory / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_username_in_settings_wins(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.json",
        {"auths": {"registry.example.org:5000": {"auth": basic("d", "d")}}},
    )
    found = credentials_for(settings(username="u", password="p", docker_config=str(config)))
    assert found == Credentials("u", "p")
    assert "p" not in repr(found)


def test_missing_docker_config_is_anonymous(tmp_path: Path) -> None:
    assert credentials_for(settings(docker_config=str(tmp_path / "nope.json"))) is None


@pytest.mark.parametrize(
    "key",
    [
        "registry.example.org:5000",
        "https://registry.example.org:5000",
        "https://registry.example.org:5000/v1/",
        "REGISTRY.example.org:5000",
    ],
)
def test_auths_keys_match_by_host_and_port(tmp_path: Path, key: str) -> None:
    config = write_config(
        tmp_path / "config.json",
        {
            "auths": {
                "other.example.org": {"auth": basic("x", "y")},
                key: {"auth": basic("me", "a:b")},
            }
        },
    )
    assert credentials_for(settings(docker_config=str(config))) == Credentials("me", "a:b")


def test_port_must_match_and_default_ports_are_ignored(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.json",
        {
            "auths": {
                "registry.example.org:5001": {"auth": basic("x", "y")},
                "https://plain.example.org/v1/": {"username": "u", "password": "p"},
            }
        },
    )
    assert credentials_for(settings(docker_config=str(config))) is None
    found = credentials_for(settings("https://plain.example.org:443", docker_config=str(config)))
    assert found == Credentials("u", "p")


def test_docker_config_env_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(
        tmp_path / "dc" / "config.json",
        {"auths": {"registry.example.org:5000": {"auth": basic("env", "pw")}}},
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    assert credentials_for(settings()) == Credentials("env", "pw")
    # an explicit docker_config may name the directory too, and wins over the environment
    write_config(
        tmp_path / "other" / "config.json",
        {"auths": {"registry.example.org:5000": {"auth": basic("dir", "pw")}}},
    )
    assert credentials_for(settings(docker_config=str(tmp_path / "other"))) == Credentials(
        "dir", "pw"
    )


def test_home_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    write_config(
        tmp_path / ".docker" / "config.json",
        {"auths": {"registry.example.org:5000": {"auth": basic("home", "pw")}}},
    )
    assert credentials_for(settings()) == Credentials("home", "pw")


def test_cred_helper_gets_the_server_on_stdin(tmp_path: Path, helpers: Path) -> None:
    seen = tmp_path / "stdin.txt"
    make_helper(
        helpers,
        "fake",
        f'test "$1" = get || exit 3\ncat > {seen}\necho \'{{"ServerURL":"x","Username":"hu","Secret":"hs"}}\'\n',
    )
    config = write_config(
        tmp_path / "config.json",
        {
            "credsStore": "absent-store",
            "credHelpers": {"registry.example.org:5000": "fake"},
            "auths": {"registry.example.org:5000": {"auth": basic("file", "pw")}},
        },
    )
    assert credentials_for(settings(docker_config=str(config))) == Credentials("hu", "hs")
    assert seen.read_text() == "registry.example.org:5000"


def test_creds_store_gets_the_auths_key(tmp_path: Path, helpers: Path) -> None:
    seen = tmp_path / "stdin.txt"
    make_helper(helpers, "store", f'cat > {seen}\necho \'{{"Username":"su","Secret":"ss"}}\'\n')
    config = write_config(
        tmp_path / "config.json",
        {"credsStore": "store", "auths": {"https://registry.example.org:5000": {}}},
    )
    assert credentials_for(settings(docker_config=str(config))) == Credentials("su", "ss")
    assert seen.read_text() == "https://registry.example.org:5000"


def test_creds_store_without_entry_falls_back_to_the_file(tmp_path: Path, helpers: Path) -> None:
    make_helper(helpers, "store", "echo 'credentials not found in native keychain'\nexit 1\n")
    config = write_config(
        tmp_path / "config.json",
        {"credsStore": "store", "auths": {"registry.example.org:5000": {"auth": basic("f", "p")}}},
    )
    assert credentials_for(settings(docker_config=str(config))) == Credentials("f", "p")
    empty = write_config(tmp_path / "empty.json", {"credsStore": "store"})
    assert credentials_for(settings(docker_config=str(empty))) is None


def test_helper_failure_is_one_clear_line(tmp_path: Path, helpers: Path) -> None:
    make_helper(helpers, "broken", "echo 'error: keychain is locked' >&2\necho more >&2\nexit 1\n")
    config = write_config(
        tmp_path / "config.json", {"credHelpers": {"registry.example.org:5000": "broken"}}
    )
    with pytest.raises(UsageError) as raised:
        credentials_for(settings(docker_config=str(config)))
    message = str(raised.value)
    assert message == (
        "docker credential helper docker-credential-broken failed for registry.example.org:5000: "
        "error: keychain is locked; run docker login registry.example.org:5000 or set username "
        "and password in the regprune config"
    )
    assert "\n" not in message


def test_missing_helper(tmp_path: Path, helpers: Path) -> None:
    config = write_config(tmp_path / "config.json", {"credsStore": "not-installed-xyz"})
    with pytest.raises(
        UsageError, match=r"docker-credential-not-installed-xyz .* is not installed"
    ):
        credentials_for(settings(docker_config=str(config)))


def test_invalid_config_and_identity_tokens(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(UsageError, match="is not valid JSON"):
        credentials_for(settings(docker_config=str(bad)))
    token_only = write_config(
        tmp_path / "token.json", {"auths": {"registry.example.org:5000": {"identitytoken": "abc"}}}
    )
    with pytest.raises(UsageError, match="identity token"):
        credentials_for(settings(docker_config=str(token_only)))
