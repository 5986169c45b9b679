"""Driving a local chain hard: stress replays, fund sweeps, their reports (matplotlib, the
``sim`` extra), scenarios, the demo and the invariant checker."""
