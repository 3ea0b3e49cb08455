"""Maintaining history: converting Chrononaut 0.1 history tables.

It builds on :mod:`chrononaut.history` and :mod:`chrononaut.capture`.
"""
