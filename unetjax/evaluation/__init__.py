"""Evaluation: per-case metrics, summaries, tables and figures."""
