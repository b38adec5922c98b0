"""Focused micro-benchmarks of single components (splitting, write budget, provider client, /ping)."""
