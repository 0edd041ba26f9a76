"""Agent sources: host figures, log files, syslog, notifications, Ceilometer publishers."""
