"""Merchandising administration: the versioned store of rules, ranking weights and
experiments (with its audit log), and A/B test assignment and statistics."""
