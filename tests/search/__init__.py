"""Unit tests of the search core (search/ and indexer/build.py)."""
