"""providers.toml: loading, keys from the environment, and errors that name provider and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.providers import ProviderConfig, load_providers, parse_providers

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "providers.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_loads():
    configs = load_providers(
        REPO / "providers.example.toml", {"DIGICORD_API_KEY": "d", "AIRFORCE_API_KEY": "a"}
    )
    assert [(c.name, c.profile) for c in configs] == [("digicord", "digicord"), ("airforce", "airforce")]


def test_full_table(tmp_path):
    path = write(
        tmp_path,
        """
[[provider]]
name = "local"
profile = "openai"
base_url = "http://127.0.0.1:11434/v1/"
api_key_env = "LOCAL_KEY"
priority = 5
models = ["llama3.2", "qwen2"]
timeout = 120
first_byte_timeout = 10
retries = 3
max_message_chars = 5000
path_prefix = ""

[[provider]]
name = "any"
profile = "anyai"
base_url = "https://api.discord.rocks"
""",
    )
    local, anyai = load_providers(path, {"LOCAL_KEY": "  sk-local  "})
    assert isinstance(local, ProviderConfig)
    assert local.base_url == "http://127.0.0.1:11434/v1"
    assert local.api_key is not None and local.api_key.reveal() == "sk-local"
    assert "sk-local" not in repr(local)
    assert (local.priority, local.models, local.timeout, local.retries) == (
        5,
        ("llama3.2", "qwen2"),
        120.0,
        3,
    )
    assert local.path_prefix == ""
    assert anyai.api_key is None and anyai.priority == 20


@pytest.mark.parametrize(
    ("table", "environ", "words"),
    [
        ('name = "x"\nprofile = "bard"\nbase_url = "https://a.b"', {}, ["'x'", "`profile`"]),
        ('name = "x"\nprofile = "openai"', {}, ["'x'", "`base_url`"]),
        ('name = "x"\nprofile = "openai"\nbase_url = "ftp://a.b"', {}, ["`base_url`"]),
        ('name = "x"\nprofile = "openai"\nbase_url = "https://u:p@a.b"', {}, ["`base_url`", "credentials"]),
        ('name = "x"\nprofile = "openai"\nbase_url = "https://a.b?key=1"', {}, ["`base_url`"]),
        (
            'name = "x"\nprofile = "openai"\nbase_url = "https://a.b"\napi_key = "sk-1"',
            {},
            ["`api_key`", "api_key_env"],
        ),
        (
            'name = "x"\nprofile = "openai"\nbase_url = "https://a.b"\napi_key_env = "NOPE"',
            {},
            ["NOPE", "not set"],
        ),
        (
            'name = "x"\nprofile = "openai"\nbase_url = "https://a.b"\napi_key_env = "has space"',
            {},
            ["api_key_env"],
        ),
        ('name = "x"\nprofile = "openai"\nbase_url = "https://a.b"\ntimeout = -1', {}, ["`timeout`"]),
        ('name = "x"\nprofile = "openai"\nbase_url = "https://a.b"\nretries = 9', {}, ["`retries`"]),
        ('name = "x"\nprofile = "openai"\nbase_url = "https://a.b"\nmodels = "gpt"', {}, ["`models`"]),
        ('name = "x"\nprofile = "openai"\nbase_url = "https://a.b"\nprority = 1', {}, ["`prority`"]),
        (
            'name = "x"\nprofile = "openai"\nbase_url = "https://a.b"\npath_prefix = "v1"',
            {},
            ["`path_prefix`"],
        ),
        ('name = "bad name!"\nprofile = "openai"\nbase_url = "https://a.b"', {}, ["Provider #1", "`name`"]),
    ],
)
def test_errors_name_the_provider_and_field(tmp_path, table, environ, words):
    path = write(tmp_path, "[[provider]]\n" + table + "\n")
    with pytest.raises(ConfigError) as caught:
        load_providers(path, environ)
    message = str(caught.value)
    for word in words:
        assert word in message
    assert "sk-1" not in message


def test_duplicate_names(tmp_path):
    entry = '[[provider]]\nname = "x"\nprofile = "openai"\nbase_url = "https://a.b"\n'
    with pytest.raises(ConfigError, match="used twice"):
        load_providers(write(tmp_path, entry * 2), {})


def test_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_providers(tmp_path / "missing.toml", {})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_providers(write(tmp_path, "[[provider]\n"), {})
    with pytest.raises(ConfigError, match="unknown top-level"):
        load_providers(write(tmp_path, "providers = []\n"), {})
    assert load_providers(write(tmp_path, "# nothing yet\n"), {}) == []


def test_openai_without_a_way_to_pick_a_model_is_a_start_up_error():
    table = {"name": "x", "profile": "openai", "base_url": "https://a.b/v1"}
    with pytest.raises(ConfigError, match="default_model"):
        parse_providers({"provider": [table]}, {})
    assert parse_providers({"provider": [{**table, "default_model": "m"}]}, {})[0].default_model == "m"
    assert parse_providers({"provider": [{**table, "models": ["a"]}]}, {})[0].default_model is None
