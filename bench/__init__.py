"""Bulwark's benchmarks: gas per operation, keeper screening, liquidation latency, build times.

Run ``python -m bench`` (or ``make bench``) for all of them, ``python -m bench gas|screening|e2e|compile``
for one. Results go to bench/results/*.json and the tables to bench/RESULTS.md.
"""
