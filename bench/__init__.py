"""Benchmarks of Chrononaut against plain Flask-SQLAlchemy and its peers.

Run ``python -m bench --help``; docs/performance.rst explains the method and the results.
"""
