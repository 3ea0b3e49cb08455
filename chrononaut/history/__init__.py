"""Reading history: the activity table, snapshots of its rows, how values are stored,
and the statements that read an object's history.

This is the lowest layer of the package: capture, maintenance and the interfaces build
on it, and it imports none of them.
"""
