"""Metering: the sample store, its retention and roll-ups, statistics and the meter stage."""
