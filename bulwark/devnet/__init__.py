"""A local chain: Anvil, the compiler and the deployer."""
