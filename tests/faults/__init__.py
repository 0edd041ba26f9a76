"""Fault tests: the agent under rotation, kills and restarts, counted exactly (see support.py)."""
