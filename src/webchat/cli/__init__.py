"""Command line: ``webchat serve | chat | agent | bot``."""
