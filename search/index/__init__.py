"""The snapshot structures the query pipeline reads: the manifest and its atomic publish,
the product store, the lexical index, the vocabulary and the colour index."""
