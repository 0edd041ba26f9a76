"""Agent sources: host figures, log files, the journal, syslog, notifications, Ceilometer publishers."""
