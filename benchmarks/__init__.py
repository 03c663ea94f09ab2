"""Benchmarks: figures of dmledger measured against a baseline in the same run."""
