"""Rule engine: Aodh-style alarms, event and log alarms, composite alarms, Zabbix-style triggers."""
