"""Unit tests of the Algolia protocol mapping (:mod:`api.algolia`), without HTTP."""
