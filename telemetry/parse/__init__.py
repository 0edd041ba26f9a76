"""The parse stage: Logstash grok on raw log entries, normalised into Events."""

from telemetry.parse.grok import Grok, GrokError, GrokTimeout, compile_grok
from telemetry.parse.parser import FAILURE_TAG, TIMEOUT_TAG, Parser

__all__ = ["FAILURE_TAG", "TIMEOUT_TAG", "Grok", "GrokError", "GrokTimeout", "Parser", "compile_grok"]
