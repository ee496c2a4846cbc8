"""Shared pytest configuration."""

pytest_plugins = ["poso_sim.sim.pytest_plugin"]
