"""Concord: a Discord AI bot built on one shared provider client."""

__version__ = "0.1.0"
