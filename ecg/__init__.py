"""Shared code of the ECG scalogram pipeline; the numbered scripts at the top only orchestrate."""
