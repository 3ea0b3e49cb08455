"""Maintaining history: converting Chrononaut 0.1 history tables, pruning it by the
models' retention rules, and erasing values from it.

It builds on :mod:`chrononaut.history` and :mod:`chrononaut.capture`.
"""
