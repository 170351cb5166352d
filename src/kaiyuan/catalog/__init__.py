"""Catalog of the world's open models: their licenses and openness, imported from published catalogs."""
