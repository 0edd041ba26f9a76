"""Metering: samples, their signatures, the transformer pipeline and the store."""
