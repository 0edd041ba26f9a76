"""Several servers as one: membership with heartbeats in PostgreSQL, and who owns which alarm."""
