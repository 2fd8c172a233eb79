"""Settings by concern: one declaration per option gives its flag, its variable, its validation and its docs row."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.config import DOCS_PAGE, ConfigError, Settings, argument_parser, markdown_table, with_table
from gateway.services.chat import FlushPolicy
from gateway.transport.settings import TransportSettings

# Every flag (and so every GATEWAY_* variable) of the flat Settings before the options were grouped; people's
# scripts, manifests and .env files use these names.
KEYS_IN_USE_BEFORE_GROUPING = (
    "listen",
    "tls_cert",
    "tls_key",
    "insecure",
    "workers",
    "reuse_port",
    "grace_seconds",
    "drain_delay_seconds",
    "max_concurrent_rpcs",
    "gc_freeze",
    "web_listen",
    "no_web",
    "web_allowed_origin",
    "web_static_dir",
    "log_level",
    "log_format",
    "metrics_listen",
    "otlp_endpoint",
    "aws_endpoint_url",
    "aws_region",
    "table_name",
    "user_pool_id",
    "app_client_id",
    "aws_timeout_seconds",
    "cognito_endpoint_url",
    "refresh_token_rotation",
    "refresh_token_lifetime_seconds",
    "devstack_listen",
    "devstack_otp_length",
    "demo_data",
    "otp_max_attempts",
    "otp_max_lifetime_seconds",
    "login_resend_cooldown_seconds",
    "login_per_email_limit",
    "login_per_email_window_seconds",
    "login_per_peer_limit",
    "login_per_peer_window_seconds",
    "verify_per_peer_limit",
    "verify_per_peer_window_seconds",
    "trusted_proxies",
    "client_address_header",
    "issuer",
    "jwks_url",
    "allowed_client_ids",
    "jwt_leeway_seconds",
    "max_token_bytes",
    "jwks_refetch_interval_seconds",
    "jwks_max_stale_seconds",
    "jwks_timeout_seconds",
    "revocation_poll_seconds",
    "token_cache_size",
    "agent_model",
    "chat_session_ttl_seconds",
    "chat_max_rounds",
    "chat_turn_timeout_seconds",
    "chat_history_turns",
    "chat_flush_interval_ms",
    "chat_latency_budget_ms",
    "chat_text_messages_per_second",
    "chat_flush_max_chars",
    "scripted_delta_delay_ms",
    "bedrock_model_id",
    "bedrock_region",
    "bedrock_endpoint_url",
    "bedrock_max_tokens",
    "bedrock_timeout_seconds",
)


def _flags() -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", argument_parser().format_help()))


def test_docs_configuration_shows_the_table_the_declarations_generate() -> None:
    page = DOCS_PAGE.read_text()
    assert with_table(page) == page, "docs/configuration.md is stale: run `make settings-docs`"


def test_the_table_has_one_row_per_flag_and_variable() -> None:
    table = markdown_table()
    for key in KEYS_IN_USE_BEFORE_GROUPING:
        flag, variable = f"--{key.replace('_', '-')}", f"GATEWAY_{key.upper()}"
        assert sum(1 for line in table.splitlines() if f"| `{flag}`" in line and f"`{variable}`" in line) == 1, key


def test_every_flag_in_use_before_grouping_is_still_accepted() -> None:
    assert {f"--{key.replace('_', '-')}" for key in KEYS_IN_USE_BEFORE_GROUPING} <= _flags()


@pytest.mark.parametrize(
    ("argv", "environ", "where", "expected"),
    [
        (["--grace-seconds", "3"], {}, ("transport", "grace_seconds"), 3.0),
        ([], {"GATEWAY_LISTEN": "127.0.0.1:0"}, ("transport", "listen"), "127.0.0.1:0"),
        ([], {"GATEWAY_MAX_TOKEN_BYTES": "4096"}, ("auth", "max_token_bytes"), 4096),
        (["--metrics-listen", "127.0.0.1:9100"], {}, ("observability", "metrics_listen"), "127.0.0.1:9100"),
        ([], {"GATEWAY_CHAT_MAX_ROUNDS": "4"}, ("chat", "max_rounds"), 4),
        (["--login-per-peer-limit", "7"], {}, ("login", "per_peer_limit"), 7),
        ([], {"GATEWAY_AWS_REGION": "eu-west-1"}, ("aws", "region"), "eu-west-1"),
        (["--devstack-otp-length", "6"], {}, ("devstack", "otp_length"), 6),
        (["--no-web"], {}, ("transport", "no_web"), True),
        ([], {"GATEWAY_GC_FREEZE": "false"}, ("transport", "gc_freeze"), False),
    ],
)
def test_an_old_flag_or_variable_sets_the_same_option_in_its_group(
    argv: list[str], environ: dict[str, str], where: tuple[str, str], expected: object
) -> None:
    group, name = where
    assert getattr(getattr(Settings.load(environ, argv), group), name) == expected


def test_a_flag_wins_over_the_variable() -> None:
    settings = Settings.load({"GATEWAY_CHAT_HISTORY_TURNS": "5"}, ["--chat-history-turns", "6"])
    assert settings.chat.history_turns == 6


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {"GATEWAY_CHAT_MAX_ROUNDS": "0"}, "GATEWAY_CHAT_MAX_ROUNDS='0': must be 1 or more"),
        (["--login-per-peer-window-seconds", "soon"], {}, "--login-per-peer-window-seconds='soon': could not convert"),
        ([], {"GATEWAY_DEVSTACK_OTP_LENGTH": "4"}, "GATEWAY_DEVSTACK_OTP_LENGTH='4': must be 6..8"),
        (["--bedrock-max-connections", "0"], {}, "--bedrock-max-connections='0': must be 1 or more"),
        (
            [],
            {"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8,nope"},
            "GATEWAY_TRUSTED_PROXIES='10.0.0.0/8,nope': 'nope' is not",
        ),
        (["--chat-flush-interval-ms", "100"], {}, "GATEWAY_CHAT_LATENCY_BUDGET_MS=80.0: must be at least"),
        ([], {"GATEWAY_USER_POOL_ID": "eu-west-1_x"}, "GATEWAY_APP_CLIENT_ID must be set with GATEWAY_USER_POOL_ID"),
        (["--web-listen", "10.1.2.3:80"], {}, "GATEWAY_WEB_LISTEN='10.1.2.3:80': a non-loopback address needs TLS"),
        (
            [],
            {"GATEWAY_CHAT_TIME_ZONE": "Mars/Olympus"},
            "GATEWAY_CHAT_TIME_ZONE='Mars/Olympus': 'Mars/Olympus' is not",
        ),
    ],
)
def test_a_bad_value_in_a_group_is_one_line_naming_the_key_and_the_value(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.load(environ, argv)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_replace_takes_flat_option_names_and_validates_the_groups_it_changes() -> None:
    settings = Settings.build(listen="127.0.0.1:0", chat_flush_interval_ms=10.0, login_per_peer_limit=2)
    assert (settings.transport.listen, settings.chat.flush_interval_ms, settings.login.per_peer_limit) == (
        "127.0.0.1:0",
        10.0,
        2,
    )
    assert settings.replace(chat_max_rounds=3).chat.max_rounds == 3
    with pytest.raises(ConfigError, match="GATEWAY_CHAT_LATENCY_BUDGET_MS"):
        settings.replace(chat_latency_budget_ms=5.0)
    with pytest.raises(TypeError, match="no option 'chat_rounds'"):
        settings.replace(chat_rounds=3)


def test_replace_takes_a_whole_group_by_its_name() -> None:
    transport = TransportSettings(listen="127.0.0.1:0", grace_seconds=1.0)
    settings = Settings.build(transport=transport, grace_seconds=2.0)
    assert (settings.transport.listen, settings.transport.grace_seconds) == ("127.0.0.1:0", 2.0)


def test_to_environment_rebuilds_the_same_settings_in_another_process(tmp_path: Path) -> None:
    changes: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "web_allowed_origin": ("https://a.example", "http://b:3000"),
        "web_static_dir": tmp_path,
        "gc_freeze": False,
        "reuse_port": True,
        "log_format": "text",
        "aws_timeout_seconds": 30.0,
        "allowed_client_ids": ("one", "two"),
        "login_per_peer_limit": 1_000_000,
        "refresh_token_rotation": True,
        "chat_flush_interval_ms": 5.0,
        "bedrock_region": "eu-west-1",
        "devstack_otp_length": 6,
    }
    settings = Settings.build(**changes)
    environment = settings.to_environment()
    assert environment["GATEWAY_GC_FREEZE"] == "false"
    assert environment["GATEWAY_WEB_ALLOWED_ORIGIN"] == "https://a.example,http://b:3000"
    assert Settings.load(environment) == settings


def test_groups_yield_their_services_policies() -> None:
    settings = Settings.build(chat_flush_interval_ms=20.0, chat_latency_budget_ms=50.0, login_per_email_limit=9)
    assert settings.chat.flush_policy() == FlushPolicy(
        interval_seconds=0.02, latency_budget_seconds=0.05, messages_per_second=5000.0, max_chars=1024
    )
    assert settings.login.policy().per_email.limit == 9
    pooled = Settings.build(user_pool_id="eu-west-1_Abc", app_client_id="client", aws_region="eu-west-1")
    assert pooled.bearer_policy().issuer == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc"
    assert pooled.bearer_policy().allowed_client_ids == frozenset({"client"})
    assert pooled.effective_jwks_url.endswith("eu-west-1_Abc/.well-known/jwks.json")


def test_transport_settings_import_nothing_of_the_composition_root() -> None:
    probe = "import sys, gateway.transport.settings; print(sorted(m for m in sys.modules if m.startswith('gateway')))"
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert "gateway.config" not in loaded
    assert "gateway.app" not in loaded
