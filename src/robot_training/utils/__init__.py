"""Utilities: seeding, logging, data collection."""
