"""Checks that the loopback Discord emulator behaves like Discord toward the real discord.py client."""
