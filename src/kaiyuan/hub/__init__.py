"""The hub: manifests, the SQLite registry and lineage."""
