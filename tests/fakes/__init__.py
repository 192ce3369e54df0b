"""Fake cloud API servers (real HTTP on loopback) that follow the reference contracts."""
