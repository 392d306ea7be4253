"""Shared test settings."""

from __future__ import annotations

pytest_plugins = ["pytester"]  # seawall's own pytest plugin is tested in fresh projects
