"""Talking to a node: JSON-RPC batches, the deployed contracts with their errors decoded, and
the transaction sender."""
