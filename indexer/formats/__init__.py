"""Catalogue format readers behind :func:`indexer.catalogue.read_catalogue`.

Each reader turns a binary stream into :class:`~indexer.formats.fields.RawRow` items; the shared
:func:`~indexer.formats.fields.build_product` validates them into :class:`search.types.Product`.
"""
