"""The interfaces for people: the ``flask chrononaut`` commands, the history viewer,
and the timeline both of them show.

The top layer: nothing below imports it, and ``import chrononaut`` does not load it.
"""
