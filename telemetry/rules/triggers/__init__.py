"""Zabbix-style triggers: expression grammar, item history, evaluation, API."""
