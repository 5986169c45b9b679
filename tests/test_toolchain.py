"""The offline toolchain: tools/solc.js (as py-solc-x and Forge use it), bulwark.core.paths and
bulwark.devnet.compiler. Everything compiles in temp dirs, never the changing contracts/."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import solcx
from packaging.version import Version
from solcx.wrapper import VERSION_REGEX

from bulwark.core import paths
from bulwark.devnet import compiler

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]
SOLC_JS = REPO / "tools" / "solc.js"

TOKEN_SOL = """\
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

contract Token is ERC20 {
    constructor() ERC20("Token", "TKN") {
        _mint(msg.sender, 1e18);
    }
}
"""

COUNTER_SOL = """\
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

contract Counter {
    uint256 public count;

    function increment() external {
        count += 1;
    }
}
"""


def _solc(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SOLC_JS), *args],
        check=False,
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


ADDER_SOL = """\
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

library Adder {
    function add(uint256 a, uint256 b) external pure returns (uint256) {
        return a + b;
    }
}

contract UsesAdder {
    function three() external pure returns (uint256) {
        return Adder.add(1, 2);
    }
}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A scratch project root: contracts/ with a counter and a linked library, nothing else."""
    (tmp_path / "contracts" / "lib").mkdir(parents=True)
    (tmp_path / "contracts" / "Counter.sol").write_text(COUNTER_SOL)
    (tmp_path / "contracts" / "lib" / "Adder.sol").write_text(ADDER_SOL)
    return tmp_path


@pytest.fixture
def token_project(project: Path) -> Path:
    """The scratch project plus an ERC-20 that imports OpenZeppelin through the remapping."""
    (project / "contracts" / "tokens").mkdir()
    (project / "contracts" / "tokens" / "Token.sol").write_text(TOKEN_SOL)
    return project


# --- tools/solc.js -------------------------------------------------------------------------


def test_version_looks_like_native_solc(tmp_path: Path) -> None:
    result = _solc("--version", cwd=tmp_path)

    assert result.returncode == 0
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "solc, the solidity compiler commandline interface"
    # Forge reads the last line, minus "Version: "; py-solc-x applies VERSION_REGEX.
    assert re.fullmatch(r"Version: 0\.8\.37\+commit\.[0-9a-f]{8}\.Linux\.g\+\+", lines[-1])
    assert re.search(VERSION_REGEX, result.stdout)
    assert solcx.wrapper.get_solc_version(SOLC_JS) == Version("0.8.37")
    full = solcx.wrapper.get_solc_version(SOLC_JS, with_commit_hash=True)
    assert str(full).startswith("0.8.37+commit.")


def test_help_lists_combined_json_outputs_like_native() -> None:
    outputs = solcx.main._get_combined_json_outputs(SOLC_JS).split(",")

    assert {"abi", "bin", "bin-runtime", "hashes", "ast", "metadata"} <= set(outputs)


def test_standard_json_compiles_openzeppelin_import_via_py_solc_x(tmp_path: Path) -> None:
    standard_input = {
        "language": "Solidity",
        "sources": {"Token.sol": {"content": TOKEN_SOL}},
        "settings": {
            "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"],
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": "cancun",
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }

    # From a temp dir with no node_modules: imports fall back to the project's node_modules.
    output = solcx.compile_standard(standard_input, base_path=tmp_path, solc_binary=SOLC_JS)

    token = output["contracts"]["Token.sol"]["Token"]
    assert len(token["evm"]["bytecode"]["object"]) > 1000
    assert {item.get("name") for item in token["abi"]} >= {"transfer", "balanceOf"}
    assert "node_modules/@openzeppelin/contracts/token/ERC20/ERC20.sol" in output["sources"]


def test_standard_json_resolves_include_path_and_bare_package_imports(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "Dep.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\n"
        "library Dep { function one() internal pure returns (uint) "
        "{ return 1; } }\n"
    )
    main_sol = (
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\n"
        'import {Dep} from "Dep.sol";\n'
        'import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";\n'
        "contract Main { function f() external pure returns (uint) "
        "{ return Math.max(Dep.one(), 2); } }\n"
    )
    standard_input = {
        "language": "Solidity",
        "sources": {"Main.sol": {"content": main_sol}},
        "settings": {"outputSelection": {"*": {"*": ["evm.bytecode.object"]}}},
    }

    result = _solc(
        "--standard-json",
        "--include-path",
        str(lib),
        cwd=tmp_path,
        stdin=json.dumps(standard_input),
    )

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert not [e for e in output.get("errors", []) if e["severity"] == "error"], output
    assert output["contracts"]["Main.sol"]["Main"]["evm"]["bytecode"]["object"]


def test_standard_json_missing_import_is_a_json_error(tmp_path: Path) -> None:
    source = 'pragma solidity ^0.8.0;\nimport "does/not/Exist.sol";\ncontract A {}\n'
    standard_input = {"language": "Solidity", "sources": {"A.sol": {"content": source}}}

    result = _solc("--standard-json", cwd=tmp_path, stdin=json.dumps(standard_input))

    assert result.returncode == 0
    errors = json.loads(result.stdout)["errors"]
    assert any("File not found" in e["message"] for e in errors)


def test_standard_json_output_over_64kib_through_a_slow_pipe_is_complete(tmp_path: Path) -> None:
    standard_input = {
        "language": "Solidity",
        "sources": {"Token.sol": {"content": TOKEN_SOL}},
        "settings": {
            "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"],
            "outputSelection": {"*": {"*": ["*"], "": ["ast"]}},
        },
    }
    proc = subprocess.Popen(
        [str(SOLC_JS), "--standard-json"], cwd=tmp_path,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(standard_input).encode())
    proc.stdin.close()
    time.sleep(1.0)  # let the pipe fill up while nobody reads
    chunks = []
    while chunk := proc.stdout.read(4096):
        chunks.append(chunk)
    proc.wait(timeout=60)
    raw = b"".join(chunks)

    assert proc.returncode == 0
    assert len(raw) > 64 * 1024
    output = json.loads(raw)  # complete and nothing but JSON
    assert "Token" in output["contracts"]["Token.sol"]


def test_combined_json_via_py_solc_x_with_remapping_and_flags(
    token_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(token_project)
    contracts = solcx.compile_files(
        ["contracts/tokens/Token.sol", "contracts/Counter.sol"],
        output_values=["abi", "bin", "bin-runtime", "hashes"],
        import_remappings={"@openzeppelin/": "node_modules/@openzeppelin/"},
        optimize=True,
        optimize_runs=200,
        evm_version="cancun",
        allow_paths=str(token_project),
        solc_binary=SOLC_JS,
    )

    token = contracts["contracts/tokens/Token.sol:Token"]
    assert set(token) == {"abi", "bin", "bin-runtime", "hashes"}
    assert isinstance(token["abi"], list)
    assert re.fullmatch(r"[0-9a-f]+", token["bin-runtime"])
    assert contracts["contracts/Counter.sol:Counter"]["hashes"]["increment()"] == "d09de08a"


def test_combined_json_raw_output_has_native_shape(project: Path) -> None:
    result = _solc("--combined-json", "abi,bin", "contracts/Counter.sol", cwd=project)

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert set(output) >= {"contracts", "version"}
    assert output["version"].endswith(".Linux.g++")
    assert list(output["contracts"]) == ["contracts/Counter.sol:Counter"]


def test_combined_json_rejects_unknown_output_and_reports_compile_errors(project: Path) -> None:
    unknown = _solc("--combined-json", "abi,bogus", "contracts/Counter.sol", cwd=project)
    (project / "Broken.sol").write_text("pragma solidity ^0.8.0;\ncontract B { uint x = ; }\n")
    broken = _solc("--combined-json", "abi", "Broken.sol", cwd=project)

    assert unknown.returncode == 1
    assert "Invalid option to --combined-json: bogus" in unknown.stderr
    assert broken.returncode == 1
    assert "ParserError" in broken.stderr and broken.stdout == ""


def test_solcx_install_folder_symlink_makes_it_an_installed_version(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """How Brownie (and bare py-solc-x) find it: ~/.solcx/solc-v0.8.37 -> tools/solc.js."""
    monkeypatch.setenv("SOLCX_BINARY_PATH", str(tmp_path))
    (tmp_path / "solc-v0.8.37").symlink_to(SOLC_JS)

    assert Version("0.8.37") in solcx.get_installed_solc_versions()
    out = solcx.compile_source(COUNTER_SOL, output_values=["abi"], solc_version="0.8.37")
    assert "<stdin>:Counter" in out


def test_forge_build_compiles_through_solc_js(token_project: Path) -> None:
    project = token_project
    forge = paths.node_bin("forge")
    shutil.copy(REPO / "foundry.toml", project / "foundry.toml")
    (project / "tools").mkdir()
    shutil.copy(SOLC_JS, project / "tools" / "solc.js")
    (project / "node_modules").symlink_to(REPO / "node_modules")

    result = subprocess.run(
        [str(forge), "build"],
        check=False,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )

    assert result.returncode == 0, result.stdout + result.stderr
    artifact = json.loads((project / "out" / "Token.sol" / "Token.json").read_text())
    assert artifact["deployedBytecode"]["object"].startswith("0x6080")


# --- bulwark.core.paths ---------------------------------------------------------------------------


def test_project_root_prefers_bulwark_home(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.HOME_ENV, str(project))

    assert paths.project_root() == project.resolve()
    assert paths.build_dir() == project.resolve() / "build" / "contracts"


def test_project_root_walks_up_from_cwd(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(paths.HOME_ENV, raising=False)
    (project / "package.json").write_text("{}")
    monkeypatch.chdir(project / "contracts" / "lib")

    assert paths.project_root() == project.resolve()


def test_project_root_falls_back_to_package_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(paths.HOME_ENV, raising=False)
    monkeypatch.chdir(tmp_path)

    assert paths.project_root() == REPO


def test_toolchain_files_fall_back_to_package_repo(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(paths.HOME_ENV, str(project))

    assert paths.solc_script() == SOLC_JS
    anvil = paths.node_bin("anvil")
    assert anvil.name == "anvil" and os.access(anvil, os.X_OK)
    assert "@foundry-rs/anvil-" in anvil.as_posix()
    with pytest.raises(paths.ToolchainMissingError, match="npm ci"):
        paths.node_bin("no-such-tool")


# --- bulwark.devnet.compiler ------------------------------------------------------------------------


def test_compile_contracts_writes_artifacts(token_project: Path) -> None:
    project = token_project
    artifacts = compiler.compile_contracts(root=project)

    # OpenZeppelin's contracts are compiled in, not written out.
    assert set(artifacts) == {"Token", "Counter", "Adder", "UsesAdder"}
    token = json.loads((project / "build" / "contracts" / "Token.json").read_text())
    assert token == artifacts["Token"]
    assert token["contractName"] == "Token"
    assert token["sourceName"] == "contracts/tokens/Token.sol"
    assert token["bytecode"].startswith("0x6080") and token["deployedBytecode"].startswith("0x")
    assert token["linkReferences"] == {} and token["deployedLinkReferences"] == {}
    assert token["compiler"]["version"].startswith("0.8.37+commit.")
    assert token["compiler"]["settings"] == compiler.compiler_settings()
    assert token["compiler"]["settings"]["evmVersion"] == compiler.EVM_VERSION == "cancun"
    hash_file = project / "build" / "contracts" / compiler.HASH_FILE
    assert hash_file.read_text().strip() == token["sourceHash"]
    assert compiler.load_artifact("Counter", root=project)["abi"] == artifacts["Counter"]["abi"]
    assert set(compiler.load_artifacts(root=project)) == set(artifacts)
    links = artifacts["UsesAdder"]["deployedLinkReferences"]
    assert (
        list(links) == ["contracts/lib/Adder.sol"] and "Adder" in links["contracts/lib/Adder.sol"]
    )
    assert artifacts["UsesAdder"]["methodIdentifiers"] == {"three()": "45caa117"}


def test_compile_contracts_skips_solc_when_nothing_changed(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = compiler.compile_contracts(root=project)
    calls = []
    real_run = compiler._run_solc
    monkeypatch.setattr(compiler, "_run_solc", lambda *a: calls.append(a) or real_run(*a))

    started = time.perf_counter()
    again = compiler.compile_contracts(root=project)
    elapsed = time.perf_counter() - started

    assert again == first and calls == []
    assert elapsed < 0.5
    (project / "contracts" / "Counter.sol").write_text(COUNTER_SOL.replace("+= 1", "+= 2"))
    changed = compiler.compile_contracts(root=project)
    assert len(calls) == 1
    assert changed["Counter"]["sourceHash"] != first["Counter"]["sourceHash"]
    compiler.compile_contracts(root=project, force=True)
    assert len(calls) == 2


def test_source_hash_covers_openzeppelin_version_and_settings(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = compiler.source_hash(project)
    real_version = compiler._package_version

    monkeypatch.setattr(
        compiler,
        "_package_version",
        lambda root, pkg: "9.9.9" if "openzeppelin" in pkg else real_version(root, pkg),
    )
    other_oz = compiler.source_hash(project)
    monkeypatch.setattr(compiler, "_package_version", real_version)
    monkeypatch.setattr(compiler, "OPTIMIZER_RUNS", 1000)
    other_runs = compiler.source_hash(project)

    assert len({base, other_oz, other_runs}) == 3


def test_removed_contract_loses_its_artifact(project: Path) -> None:
    compiler.compile_contracts(root=project)
    (project / "contracts" / "Counter.sol").unlink()

    artifacts = compiler.compile_contracts(root=project)

    assert set(artifacts) == {"Adder", "UsesAdder"}
    assert not (project / "build" / "contracts" / "Counter.json").exists()


def test_compile_error_carries_solc_message(project: Path) -> None:
    (project / "contracts" / "Broken.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\n"
        "contract Broken { function f() external { undefinedThing(); } }\n"
    )

    with pytest.raises(compiler.CompileError) as excinfo:
        compiler.compile_contracts(root=project)

    message = str(excinfo.value)
    assert "DeclarationError" in message
    assert "undefinedThing" in message and "contracts/Broken.sol" in message
    assert not (project / "build" / "contracts" / compiler.HASH_FILE).exists()


def test_warnings_do_not_fail_the_build(project: Path) -> None:
    (project / "contracts" / "Warn.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\n"
        "contract Warn { function f(uint256 unused) external pure returns (uint256) "
        "{ return 1; } }\n"
    )

    assert "Warn" in compiler.compile_contracts(root=project)


def test_duplicate_contract_names_are_rejected(project: Path) -> None:
    (project / "contracts" / "other").mkdir()
    (project / "contracts" / "other" / "Counter.sol").write_text(COUNTER_SOL)

    with pytest.raises(compiler.CompileError, match=r"Counter.*defined in both"):
        compiler.compile_contracts(root=project)


def test_load_artifact_missing_names_the_fix(project: Path) -> None:
    with pytest.raises(FileNotFoundError, match="bulwark compile"):
        compiler.load_artifact("Nope", root=project)


def test_contract_sizes_are_deployed_bytes(project: Path) -> None:
    sizes = compiler.contract_sizes(root=project)
    artifact = compiler.load_artifact("Counter", root=project)

    assert sizes["Counter"] == len(bytes.fromhex(artifact["deployedBytecode"][2:]))
    assert 0 < sizes["UsesAdder"] < compiler.CODE_SIZE_LIMIT == 24_576


def test_compile_contracts_uses_bulwark_home(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(paths.HOME_ENV, str(project))

    artifacts = compiler.compile_contracts()

    assert set(artifacts) == {"Counter", "Adder", "UsesAdder"}
    assert (project / "build" / "contracts" / "Counter.json").exists()
