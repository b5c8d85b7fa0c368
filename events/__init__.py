"""Shopper events: the event model and its stores (SQLite, PostgreSQL, Redis), server-side
impressions and query analytics. The signals learned from events feed the ranking stages in
``search/``; nothing in ``search/`` imports this package."""
