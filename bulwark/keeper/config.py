"""Settings: defaults, then a TOML file, then ``BULWARK_*`` variables, then flags.

The root, :class:`BulwarkSettings`, says where the node and the deployment are and how the keeper
signs (``BULWARK_RPC``, ``BULWARK_DEPLOYMENT``, ``BULWARK_KEYSTORE``, ``BULWARK_PRIVATE_KEY``; in the
file ``rpc``, ``deployment``, ``keystore``); its ``keeper`` part, :class:`KeeperSettings`, is the
daemon's own (``BULWARK_KEEPER_<NAME>``; in the file a ``[keeper]`` table or top-level keys).
``KeeperSettings()`` alone is a working configuration for a local chain (it reads nothing: only
:func:`load_settings` reads the file and the environment). Amounts sent on-chain (fees, balances)
are integers in wei; intervals are seconds. Private keys never pass through here: the command line
reads them from a keystore file or ``BULWARK_PRIVATE_KEY`` and hands over a signer, and a settings
file that tries to carry one is refused. The settings are a pydantic-settings model: each source is
validated against the field's type, and a refusal is a :class:`SettingsError` of one plain line per
problem naming the setting, where it came from and what it must be.
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bulwark.chain.contracts import BulwarkError
from bulwark.core.logs import FORMATS

ENV_PREFIX = "BULWARK_KEEPER_"
ROOT_ENV_PREFIX = "BULWARK_"
GWEI = 10**9
MIN_BUMP_BPS = 1_250  # a replacement must pay at least 12.5% more, as nodes require
_SECRET_KEYS = frozenset({"private_key", "key", "mnemonic", "password", "keystore_password"})


class SettingsError(BulwarkError):
    """A setting is unknown or has a value out of range."""


class _Sources:
    """The file and environment one :func:`load_settings` call reads (none by default)."""

    def __init__(
        self,
        toml: Mapping[str, Any],
        env: Mapping[str, str] | None,
        where: Mapping[str, str],
        values: Mapping[str, Any],
    ) -> None:
        self.toml = toml
        self.env = env
        self.where = where  # setting name -> the file, variable or flag that set it
        self.values = values  # setting name -> the value as given


_SOURCES: contextvars.ContextVar[_Sources | None] = contextvars.ContextVar(
    "keeper_settings_sources", default=None
)


class _MappingEnvSource(EnvSettingsSource):
    """``BULWARK_KEEPER_*`` variables from a given mapping instead of the process environment."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._env.items()}


class KeeperSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=False,
    )

    # ---- scheduling
    poll_interval: float = 0.25
    """Seconds between polls for a new block (a new block triggers one full pass)."""
    resync_interval: float = 60.0
    """Seconds between full re-reads of every tracked account's margin and positions."""
    fund_watch_interval: float = 5.0
    """Seconds between checks of the insurance fund and outstanding bad debt."""
    metrics_interval: float = 5.0
    """Seconds between refreshes of the slow gauges (fund assets, bad debt, head age)."""
    # ---- index
    checkpoint_file: str | None = None
    """Where the account index is checkpointed (block number and hash); empty: in state_dir, keyed
    by genesis hash, deployment and signer, or memory only without a state_dir."""
    state_dir: str | None = None
    """The keeper's state: checkpoints and the lock per signer and chain (the command line sets
    $XDG_STATE_HOME/bulwark/keeper, else ~/.local/state/bulwark/keeper); empty: no files, no lock."""
    checkpoint_interval: float = 10.0
    """Least seconds between checkpoint writes when no new account appeared (a new one writes at once)."""
    log_chunk_blocks: int = 2_000
    """Blocks per eth_getLogs request while catching up."""
    rpc_batch_size: int = 300
    """Calls per JSON-RPC batch when reading accounts."""
    # ---- screening
    screen_buffer: float = 0.02
    """Accounts with equity below (1 + buffer) x maintenance margin are confirmed on-chain."""
    confirm_chunk: int = 500
    """Accounts per healthsOf call."""
    # ---- sending
    max_batch: int = 40
    """Most liquidations per liquidateBatch transaction (a batch also stays within a quarter of the
    block gas limit)."""
    max_rounds_per_pass: int = 8
    """Rounds of liquidate, then cover/ADL/socialise, on fresh state within one pass."""
    priority_fee_wei: int = 1 * GWEI
    """Tip offered on a first send."""
    base_fee_multiple: int = 2
    """Max fee = base fee x this + tip, so a transaction survives a few rising blocks."""
    max_fee_cap_wei: int = 500 * GWEI
    """No send or replacement offers more than this per gas."""
    bump_bps: int = 1_500
    """Fee increase of a replacement, in basis points (at least 1250 = 12.5%)."""
    replace_after_blocks: int = 3
    """A transaction not mined after this many new blocks is replaced with higher fees."""
    replace_after_seconds: float = 30.0
    """... or after this many seconds, whichever comes first."""
    receipt_timeout: float = 60.0
    """Seconds a pass waits for its transactions; afterwards they stay tracked as in flight."""
    gas_margin_bps: int = 5_000
    """Gas limit = simulated gas x (1 + margin) for ADL, cover and socialise. Liquidation batches are
    sized by an eth_call that must liquidate every entry at the limit, plus 3%."""
    min_eth_balance_wei: int = 10**16
    """The signer needs at least this much ETH at startup (0.01 ETH)."""
    # ---- ADL and bad debt
    adl_max_targets: int = 20
    """Targets per autoDeleverage transaction."""
    socialize: bool = True
    """Socialise bad debt to the pool after the grace period when no ADL target is left."""
    # ---- fund housekeeping
    lapse_requests: bool = True
    """Lapse the insurance fund's unstake requests whose claim window has passed (their shares
    return to staked and the assets they held in reserve are free again), after the pass's
    liquidations and bad debt."""
    lapse_max_per_pass: int = 5
    """Most lapse transactions one pass sends."""
    # ---- resilience and scale
    max_failed_ticks: int = 10
    """Circuit breaker: this many failed passes in a row stop the keeper (exit code 3)."""
    backoff_initial: float = 1.0
    """First wait after the node stopped answering; doubles up to backoff_max."""
    backoff_max: float = 30.0
    """Longest wait between attempts to reach the node."""
    rpc_timeout: float = 5.0
    """Seconds one JSON-RPC request may take before the node counts as away (keep it within one or
    two block times); requests are never retried behind the keeper's back."""
    late_pass_blocks: int = 5
    """No pass completed for this many block intervals: a warning, and /healthz degraded."""
    keeper_count: int = 1
    """Keepers sharing the work; each takes the accounts whose hash mod count is its index."""
    keeper_index: int = 0
    """This keeper's number among keeper_count (0 .. keeper_count - 1); 0 also settles bad debt first."""
    backup_delay_blocks: int = 3
    """Blocks an account of another keeper stays liquidatable before this one takes it."""
    # ---- observability
    metrics_port: int = 0
    """Port of /metrics and /healthz (0: off)."""
    metrics_host: str = "127.0.0.1"
    """Interface the metrics server listens on (0.0.0.0 for every interface)."""
    log_format: str = "plain"
    """plain or json."""
    log_level: str = "INFO"
    """DEBUG (one line per pass), INFO (what was sent and why), WARNING or ERROR."""
    healthz_max_age: float = 60.0
    """/healthz fails when the last successful pass is older than this many seconds."""
    log_repeat_seconds: float = 60.0
    """A warning that repeats every block (a stale market, a grace period) is logged at most once
    per this many seconds, with the number of repeats held back."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            sources = _SOURCES.get()
            where = dict(sources.where) if sources else {}
            raise _plain(exc, where, {**(sources.values if sources else {}), **values}) from None

    @field_validator("checkpoint_file", "state_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: Any) -> Any:
        if isinstance(value, bool) and _KINDS.get(info.field_name) != "bool":
            raise ValueError("not a number")
        return value

    @model_validator(mode="after")
    def _in_range(self) -> KeeperSettings:
        validate(self)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (the constructor's arguments) < environment < TOML file, for :func:`load_settings`
        only; a plain ``KeeperSettings(...)`` reads neither the environment nor a file."""
        sources = _SOURCES.get()
        if sources is None:
            return (init_settings,)
        env = env_settings if sources.env is None else _MappingEnvSource(settings_cls, sources.env)
        return (init_settings, env, InitSettingsSource(settings_cls, dict(sources.toml)))

    def replace(self, **changes: Any) -> KeeperSettings:
        return KeeperSettings(**(self.as_dict() | changes))

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


_KINDS = {
    name: getattr(f.annotation, "__name__", "str")
    for name, f in KeeperSettings.model_fields.items()
}


def validate(s: KeeperSettings) -> None:
    """Every value in its range; a :class:`SettingsError` of one line per problem, naming the
    setting, what it may be and the value it got."""
    problems = [p for p in _range_problems(s) if p]
    if problems:
        raise SettingsError("\n".join(problems))


_POSITIVE = (
    "poll_interval",
    "resync_interval",
    "fund_watch_interval",
    "metrics_interval",
    "checkpoint_interval",
    "receipt_timeout",
    "backoff_initial",
    "backoff_max",
    "replace_after_seconds",
    "healthz_max_age",
    "rpc_timeout",
    "log_repeat_seconds",
)
_AT_LEAST_ONE = (
    "log_chunk_blocks",
    "rpc_batch_size",
    "confirm_chunk",
    "max_batch",
    "max_rounds_per_pass",
    "base_fee_multiple",
    "replace_after_blocks",
    "adl_max_targets",
    "lapse_max_per_pass",
    "max_failed_ticks",
    "keeper_count",
    "late_pass_blocks",
)
_NOT_NEGATIVE = ("screen_buffer", "gas_margin_bps", "min_eth_balance_wei", "backup_delay_blocks")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _range_problems(s: KeeperSettings) -> Iterator[str | None]:
    for name in _POSITIVE:
        if not getattr(s, name) > 0:
            yield f"{name} must be positive, got {getattr(s, name)}"
    for name in _AT_LEAST_ONE:
        if getattr(s, name) < 1:
            yield f"{name} must be at least 1, got {getattr(s, name)}"
    for name in _NOT_NEGATIVE:
        if getattr(s, name) < 0:
            yield f"{name} must not be negative, got {getattr(s, name)}"
    if s.bump_bps < MIN_BUMP_BPS:
        yield f"bump_bps must be at least {MIN_BUMP_BPS} (12.5%), got {s.bump_bps}"
    if s.keeper_count >= 1 and not 0 <= s.keeper_index < s.keeper_count:
        yield f"keeper_index must be in [0, {s.keeper_count}) (keeper_count), got {s.keeper_index}"
    if s.priority_fee_wei < 0:
        yield f"priority_fee_wei must not be negative, got {s.priority_fee_wei}"
    elif s.max_fee_cap_wei < s.priority_fee_wei:
        yield (
            f"max_fee_cap_wei must be at least priority_fee_wei ({s.priority_fee_wei}), "
            f"got {s.max_fee_cap_wei}"
        )
    if not 0 <= s.metrics_port <= 65_535:
        yield f"metrics_port must be in [0, 65535], got {s.metrics_port}"
    if s.log_format not in FORMATS:
        yield f"log_format must be one of {', '.join(FORMATS)}, got {s.log_format!r}"
    if s.log_level.upper() not in LOG_LEVELS:
        yield f"log_level must be DEBUG, INFO, WARNING or ERROR, got {s.log_level!r}"


# ---------------------------------------------------------------------------- sources


def _check_name(name: str, source: str) -> None:
    if name in _SECRET_KEYS:
        raise SettingsError(
            f"{source}: keys do not belong in keeper settings; use --keystore FILE or BULWARK_PRIVATE_KEY"
        )
    if name not in _KINDS:
        raise SettingsError(f"{source}: unknown keeper setting {name!r}")


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise SettingsError(f"keeper config file not found: {file}")
    try:
        return tomllib.loads(file.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"keeper config {file} is not valid TOML: {exc}") from None


def from_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Keeper settings from a TOML file: top-level keys or a ``[keeper]`` table (both may be
    used); the root's keys (``rpc``, ``deployment``, ``keystore``) are :func:`root_from_toml`'s."""
    data = _read_toml(path)
    table = data.pop("keeper", {})
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: keeper must be a table ([keeper]), got {table!r}")
    merged = {k: v for k, v in data.items() if k not in ROOT_FILE_KEYS} | table
    for name in merged:
        _check_name(name, str(path))
    return merged


def root_from_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The root's keys of a TOML file (top level): ``rpc``, ``deployment``, ``keystore``."""
    return {k: v for k, v in _read_toml(path).items() if k in ROOT_FILE_KEYS}


def env_names(env: Mapping[str, str]) -> dict[str, str]:
    """Setting name to variable, for every ``BULWARK_KEEPER_<NAME>`` variable (each checked)."""
    out: dict[str, str] = {}
    for var in env:
        if var.upper().startswith(ENV_PREFIX):
            name = var[len(ENV_PREFIX) :].lower()
            _check_name(name, var)
            out[name] = var
    return out


def _plain(
    exc: ValidationError, sources: dict[str, str], values: Mapping[str, Any]
) -> SettingsError:
    """One line per problem: where the value came from, the setting, what it must be, the value."""
    lines = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else "?"
        where = sources.get(name, "settings")
        got = values.get(name, err.get("input"))
        lines.append(f"{where}: {name} must be {_KINDS.get(name, 'str')}, got {got!r}")
    return SettingsError("\n".join(lines))


@contextmanager
def _reading(sources: _Sources) -> Iterator[None]:
    token = _SOURCES.set(sources)
    try:
        yield
    finally:
        _SOURCES.reset(token)


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> KeeperSettings:
    """Defaults < TOML file < environment < ``overrides`` (the command-line flags; None is skipped).

    `env` stands in for the process environment (tests); None reads ``os.environ``."""
    toml = from_toml(config_file) if config_file is not None else {}
    environ: Mapping[str, str] = os.environ if env is None else env
    from_env = env_names(environ)
    flags = {n: v for n, v in (overrides or {}).items() if v is not None}
    for name in flags:
        _check_name(name, "flag")
    sources = dict.fromkeys(toml, str(config_file))
    sources |= from_env
    sources |= {n: f"--{n.replace('_', '-')}" for n in flags}
    values = {**toml, **{n: environ[v] for n, v in from_env.items()}, **flags}
    with _reading(_Sources(toml, env, sources, values)):
        return KeeperSettings(**flags)


# ---------------------------------------------------------------------------- the root


class BulwarkSettings(BaseSettings):
    """Where the node and the deployment are, how the keeper signs, and the keeper's own settings.

    The command line's flags (``--rpc``, ``--deployment``, ``--keystore``) override these; a key
    comes only from the environment (or a keystore file), never from the settings file."""

    model_config = SettingsConfigDict(
        env_prefix=ROOT_ENV_PREFIX,
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=False,
    )

    rpc: str | None = None
    """JSON-RPC URL of the node (http, https, ws or wss)."""
    deployment: str | None = None
    """The deployment file; empty: the default for the node's chain id."""
    keystore: str | None = None
    """Encrypted key file the keeper signs with (its password from BULWARK_KEYSTORE_PASSWORD)."""
    private_key: SecretStr | None = None
    """The keeper's key, 32 bytes in hex; from the environment only, never from a file."""
    keeper: KeeperSettings = Field(default_factory=KeeperSettings)
    """The daemon's own settings (BULWARK_KEEPER_*, the [keeper] table)."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            sources = _SOURCES.get()
            where = dict(sources.where) if sources else {}
            lines = []
            for err in exc.errors():
                name = str(err["loc"][0]) if err["loc"] else "?"
                allowed = _ROOT_ALLOWED.get(name, "text")
                got = "a value that is not shown" if name == "private_key" else repr(err["input"])
                lines.append(f"{where.get(name, 'settings')}: {name} must be {allowed}, got {got}")
            raise SettingsError("\n".join(lines)) from None

    @field_validator("rpc", "deployment", "keystore", "private_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("rpc")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("not a URL")
        return value

    @field_validator("private_key")
    @classmethod
    def _hex_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            text = value.get_secret_value().removeprefix("0x")
            if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
                raise ValueError("not a key")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what :func:`load_root` gathered: a plain ``BulwarkSettings()`` reads nothing."""
        return (init_settings,)


ROOT_FILE_KEYS = frozenset({"rpc", "deployment", "keystore"})  # private_key: environment only
_ROOT_ALLOWED = {
    "rpc": "an http://, https://, ws:// or wss:// URL",
    "deployment": "a file path",
    "keystore": "a file path",
    "private_key": "32 bytes in hex (64 hex digits, 0x optional)",
}


def load_root(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    keeper_overrides: Mapping[str, Any] | None = None,
) -> BulwarkSettings:
    """Defaults < TOML file < ``BULWARK_*`` variables < flags, for the root (``overrides``: rpc,
    deployment, keystore) and for the keeper (``keeper_overrides``, as :func:`load_settings`).

    `env` stands in for the process environment (tests); None reads ``os.environ``. A refusal is
    one :class:`SettingsError`, one line per problem, the keeper's problems first."""
    environ: Mapping[str, str] = os.environ if env is None else env
    keeper = load_settings(config_file, env, keeper_overrides)
    toml = root_from_toml(config_file) if config_file is not None else {}
    from_env = {
        name: f"{ROOT_ENV_PREFIX}{name.upper()}"
        for name in BulwarkSettings.model_fields
        if name != "keeper" and f"{ROOT_ENV_PREFIX}{name.upper()}" in environ
    }
    flags = {n: v for n, v in (overrides or {}).items() if v is not None}
    where = dict.fromkeys(toml, str(config_file)) | from_env
    where |= {n: f"--{n.replace('_', '-')}" for n in flags}
    values = {**toml, **{n: environ[v] for n, v in from_env.items()}, **flags}
    with _reading(_Sources({}, {}, where, values)):
        return BulwarkSettings(**values, keeper=keeper)


# ---------------------------------------------------------------------------- the table


def settings_rows() -> list[tuple[str, str, str, str]]:
    """Every setting as (environment variable, TOML key, default, meaning): the table of
    docs/keeper.md, which a test compares with this."""
    rows = []
    for name, f in BulwarkSettings.model_fields.items():
        if name == "keeper":
            continue
        toml = f"`{name}`" if name in ROOT_FILE_KEYS else "(environment only)"
        rows.append((f"`{ROOT_ENV_PREFIX}{name.upper()}`", toml, "none", _one_line(f.description)))
    for name, f in KeeperSettings.model_fields.items():
        default = "none" if f.default is None else f"`{f.default!r}`"
        rows.append(
            (f"`{ENV_PREFIX}{name.upper()}`", f"`{name}`", default, _one_line(f.description))
        )
    return rows


def settings_table() -> str:
    head = "| environment variable | TOML key | default | meaning |\n| --- | --- | --- | --- |\n"
    return head + "".join(f"| {' | '.join(row)} |\n" for row in settings_rows())


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")
