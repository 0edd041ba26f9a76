"""The event store: parsed log events and notifications kept, searchable and expiring."""
