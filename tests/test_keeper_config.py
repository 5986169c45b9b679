"""Keeper settings (file < environment < flags), their validation, and the structured logs."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from bulwark.chain.sender import Eip1559Strategy, Fees
from bulwark.core import paths
from bulwark.core.logs import kv, setup_logging
from bulwark.keeper.config import (
    BulwarkSettings,
    KeeperSettings,
    SettingsError,
    load_root,
    load_settings,
    settings_table,
)


def test_defaults_need_no_file() -> None:
    s = KeeperSettings()
    assert s.metrics_port == 0 and s.keeper_count == 1 and s.bump_bps >= 1_250
    assert load_settings(None, env={}) == s


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    file = tmp_path / "keeper.toml"
    file.write_text(
        'poll_interval = 0.5\nmetrics_port = 9100\nlog_format = "json"\n'
        "[keeper]\nmax_batch = 7\npriority_fee_wei = 2_000_000_000\n"
    )
    env = {
        "BULWARK_KEEPER_METRICS_PORT": "9200",
        "BULWARK_KEEPER_SOCIALIZE": "false",
        "BULWARK_RPC": "ignored: not a keeper setting",
    }
    s = load_settings(file, env=env, overrides={"metrics_port": 9300, "log_format": None})
    assert s.poll_interval == 0.5  # file
    assert s.max_batch == 7 and s.priority_fee_wei == 2 * 10**9  # file, [keeper] table
    assert s.socialize is False  # environment
    assert s.metrics_port == 9300  # the flag wins over env and file
    assert s.log_format == "json"  # a flag left unset does not override


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"BULWARK_KEEPER_BUMP_BPS": "1000"}, "at least 1250"),
        ({"BULWARK_KEEPER_POLL_INTERVAL": "soon"}, "poll_interval must be float"),
        ({"BULWARK_KEEPER_NO_SUCH_THING": "1"}, "unknown keeper setting 'no_such_thing'"),
        ({"BULWARK_KEEPER_PRIVATE_KEY": "0xabc"}, "keys do not belong"),
        ({"BULWARK_KEEPER_KEEPER_COUNT": "2", "BULWARK_KEEPER_KEEPER_INDEX": "2"}, "keeper_index"),
        ({"BULWARK_KEEPER_LOG_FORMAT": "xml"}, "log_format must be one of plain, json"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(
    source: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as info:
        load_settings(None, env=source)
    assert "0xabc" not in str(info.value)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("poll_interval = = 1\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(bad, env={})
    secret = tmp_path / "secret.toml"
    secret.write_text(
        '[keeper]\nprivate_key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"\n'
    )
    with pytest.raises(SettingsError, match="keys do not belong") as info:
        load_settings(secret, env={})
    assert "59c699" not in str(info.value)


def test_json_logs_carry_fields_and_redact_secrets() -> None:
    out = io.StringIO()
    log = setup_logging("json", "INFO", stream=out)
    log.info(
        "liquidated", extra=kv(account="0xabc", market=0, private_key="0xdeadbeef", sizes=[1, 2])
    )
    line = json.loads(out.getvalue().strip())
    assert line["msg"] == "liquidated" and line["level"] == "info"
    assert line["account"] == "0xabc" and line["market"] == 0 and line["sizes"] == [1, 2]
    assert line["private_key"] == "<redacted>" and "deadbeef" not in out.getvalue()


def test_plain_logs_are_key_value() -> None:
    out = io.StringIO()
    log = setup_logging("plain", "INFO", stream=out)
    log.warning(
        "entry skipped", extra=kv(error="LiquidationAccountHealthy(account=0x1, equityWad=5)")
    )
    log.debug("not shown")
    text = out.getvalue()
    assert (
        'WARNING entry skipped error="LiquidationAccountHealthy(account=0x1, equityWad=5)"' in text
    )
    assert "not shown" not in text
    logging.getLogger("bulwark.keeper").handlers.clear()


def test_fee_bumps_are_at_least_12_5_percent_and_capped() -> None:
    gwei = 10**9
    strategy = Eip1559Strategy(
        priority_fee=gwei, base_fee_multiple=2, max_fee_cap=10 * gwei, bump_bps=1_250
    )
    fees = strategy.initial(base_fee=2 * gwei)
    assert fees == Fees(5 * gwei, gwei)
    seen = [fees]
    while (nxt := strategy.bump(seen[-1], base_fee=2 * gwei)) is not None:
        assert (
            nxt.max_fee * 8 >= seen[-1].max_fee * 9
            and nxt.priority_fee * 8 >= seen[-1].priority_fee * 9
        )
        assert nxt.max_fee <= 10 * gwei and nxt.priority_fee <= nxt.max_fee
        seen.append(nxt)
    assert 3 <= len(seen) <= 10  # it rose, then stopped at the cap rather than under-bumping
    assert seen[-1].max_fee * 9 > 10 * gwei * 8  # the last one sits within one bump of the cap
    # a rising base fee lifts the max fee beyond the plain bump
    assert strategy.bump(fees, base_fee=4 * gwei) == Fees(9_125_000_000, 1_125_000_000)


def test_each_problem_is_one_plain_line_naming_its_source(tmp_path: Path) -> None:
    file = tmp_path / "keeper.toml"
    file.write_text("[keeper]\nmax_batch = 2.5\nsocialize = true\n")
    env = {"BULWARK_KEEPER_POLL_INTERVAL": "soon", "BULWARK_KEEPER_SOCIALIZE": "maybe"}
    with pytest.raises(SettingsError) as info:
        load_settings(file, env=env, overrides={"metrics_port": "ninety"})
    lines = str(info.value).splitlines()
    assert len(lines) == 4 and set(lines) == {
        "--metrics-port: metrics_port must be int, got 'ninety'",
        "BULWARK_KEEPER_POLL_INTERVAL: poll_interval must be float, got 'soon'",
        "BULWARK_KEEPER_SOCIALIZE: socialize must be bool, got 'maybe'",
        f"{file}: max_batch must be int, got 2.5",
    }


def test_types_and_empty_values_coerce_as_before(tmp_path: Path) -> None:
    env = {
        "BULWARK_KEEPER_PRIORITY_FEE_WEI": "2_000_000_000",
        "BULWARK_KEEPER_SOCIALIZE": "off",
        "BULWARK_KEEPER_CHECKPOINT_FILE": "",
        "BULWARK_KEEPER_SCREEN_BUFFER": "0.05",
    }
    s = load_settings(None, env=env)
    assert s.priority_fee_wei == 2 * 10**9 and s.socialize is False
    assert s.checkpoint_file is None and s.screen_buffer == 0.05
    with pytest.raises(SettingsError, match="poll_interval must be float, got True"):
        KeeperSettings(poll_interval=True)
    assert s.replace(max_batch=3).max_batch == 3 and s.replace(max_batch=3).socialize is False
    with pytest.raises(SettingsError, match="max_batch must be at least 1"):
        s.replace(max_batch=0)


def test_settings_read_the_environment_only_through_the_loader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BULWARK_KEEPER_MAX_BATCH", "9")
    assert KeeperSettings().max_batch == 40  # a plain construction reads nothing
    assert load_settings(None).max_batch == 9  # the loader reads the process environment
    assert KeeperSettings.model_fields["max_batch"].description  # documented field by field


# ---------------------------------------------------------------------------- BULWARK_* root


def test_the_root_reads_bulwark_variables_the_file_and_flags(tmp_path: Path) -> None:
    file = tmp_path / "keeper.toml"
    file.write_text(
        'rpc = "http://file:8545"\ndeployment = "/file/deployment.json"\n'
        'keystore = "/file/key.json"\n[keeper]\nmax_batch = 7\n'
    )
    env = {
        "BULWARK_RPC": "ws://env:8546",
        "BULWARK_PRIVATE_KEY": "0x" + "ab" * 32,
        "BULWARK_KEEPER_MAX_BATCH": "9",
        "BULWARK_KEYSTORE_PASSWORD": "not a setting of the keeper",
    }
    root = load_root(file, env, {"deployment": "/flag/deployment.json", "keystore": None})
    assert root.rpc == "ws://env:8546"  # the environment over the file
    assert root.deployment == "/flag/deployment.json"  # the flag over both
    assert root.keystore == "/file/key.json"  # the file
    assert root.private_key is not None and "ab" not in repr(root)  # never shown
    assert root.keeper.max_batch == 9  # the keeper's part, BULWARK_KEEPER_*
    assert load_root(None, {}) == BulwarkSettings()


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"BULWARK_RPC": "localhost:8545"},
            "BULWARK_RPC: rpc must be an http://, https://, ws:// or wss:// URL, got "
            "'localhost:8545'",
        ),
        (
            {"BULWARK_PRIVATE_KEY": "0x1234"},
            "BULWARK_PRIVATE_KEY: private_key must be 32 bytes in hex (64 hex digits, 0x "
            "optional), got a value that is not shown",
        ),
        (
            {"BULWARK_KEEPER_MAX_FEE_CAP_WEI": "5", "BULWARK_KEEPER_PRIORITY_FEE_WEI": "7"},
            "max_fee_cap_wei must be at least priority_fee_wei (7), got 5",
        ),
        (
            {"BULWARK_KEEPER_LAPSE_MAX_PER_PASS": "0"},
            "lapse_max_per_pass must be at least 1, got 0",
        ),
    ],
)
def test_each_refusal_is_one_line_naming_the_setting_the_value_and_what_it_may_be(
    env: dict[str, str], line: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_root(None, env)
    assert str(info.value) == line
    assert "0x1234" not in str(info.value)


def test_the_settings_file_reaches_every_field(tmp_path: Path) -> None:
    special: dict[str, object] = {
        "keeper_count": 2,
        "keeper_index": 1,
        "log_format": "json",
        "log_level": "DEBUG",
        "metrics_host": "0.0.0.0",
        "checkpoint_file": str(tmp_path / "checkpoint.json"),
        "state_dir": str(tmp_path),
    }
    values: dict[str, object] = {}
    for name, f in KeeperSettings.model_fields.items():
        if name in special:
            values[name] = special[name]
        elif isinstance(f.default, bool):
            values[name] = not f.default
        else:
            values[name] = f.default * 2 if isinstance(f.default, float) else f.default + 1
    lines = ["[keeper]"] + [f"{n} = {json.dumps(v)}" for n, v in values.items()]
    file = tmp_path / "every.toml"
    file.write_text('rpc = "https://n"\ndeployment = "d.json"\nkeystore = "k.json"\n')
    file.write_text(file.read_text() + "\n".join(lines) + "\n")
    root = load_root(file, {})
    assert (root.rpc, root.deployment, root.keystore) == ("https://n", "d.json", "k.json")
    for name, value in values.items():
        assert getattr(root.keeper, name) == value != KeeperSettings.model_fields[name].default
    file_keys = {n for n in BulwarkSettings.model_fields if n not in ("keeper", "private_key")}
    assert file_keys == {"rpc", "deployment", "keystore"}


def test_the_settings_table_in_the_docs_is_the_model() -> None:
    doc = (paths.project_root() / "docs" / "keeper.md").read_text().splitlines()
    start = doc.index("| environment variable | TOML key | default | meaning |")
    end = start
    while end + 1 < len(doc) and doc[end + 1].startswith("|"):
        end += 1
    assert "\n".join(doc[start : end + 1]) + "\n" == settings_table(), (
        "docs/keeper.md's settings table differs from the model: regenerate it with "
        "bulwark.keeper.config.settings_table()"
    )
    documented = {row.split("|")[1].strip().strip("`") for row in doc[start + 2 : end + 1]}
    assert documented == {f"BULWARK_{n.upper()}" for n in BulwarkSettings.model_fields} - {
        "BULWARK_KEEPER"
    } | {f"BULWARK_KEEPER_{n.upper()}" for n in KeeperSettings.model_fields}
