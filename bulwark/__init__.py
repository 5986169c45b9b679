"""Bulwark's Python package: the keeper an operator runs and the tools around it.

Subpackages are layers (docs/architecture.md): ``core`` (units, errors, risk math, packaged ABIs),
``chain`` (JSON-RPC, contracts, the transaction sender), ``keeper`` (the daemon), ``devnet`` (a
local node, the compiler, the deployer), ``sim`` (stress replays and reports) and ``cli``.
"""
