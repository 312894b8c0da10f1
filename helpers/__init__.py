"""Helpers for the LLM parameters course."""
