"""Keeper settings (file < environment < flags), their validation, and the structured logs."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from bulwark.chain.sender import Eip1559Strategy, Fees
from bulwark.core.logs import kv, setup_logging
from bulwark.keeper.config import KeeperSettings, SettingsError, load_settings


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
