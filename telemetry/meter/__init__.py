"""Metering: samples, their signatures, the transformer pipeline, the store, retention, roll-ups and statistics."""
