"""Alarm actions: webhooks, chat, pager, mail and Heat signals, delivered through a durable outbox."""
