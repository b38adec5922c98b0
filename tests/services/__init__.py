"""Unit tests for bot/services."""
