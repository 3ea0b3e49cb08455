"""Capturing changes: the session, the flush listeners that record each change, change
detection, record locking, the write guard, and who and why.

It builds on :mod:`chrononaut.history` (the activity table it writes, the snapshot
format) and imports nothing above it.
"""
