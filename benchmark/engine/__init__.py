"""Shared training machinery: written once, used by every method."""
