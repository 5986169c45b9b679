"""Arithmetic and vocabulary shared by every layer: units, errors, the risk math of the
contracts, where files live, logs, and the ABIs and error words shipped as package data."""
