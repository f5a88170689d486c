"""The SQLite trace store: runs, items, images, agent calls, descriptions, traces and verdicts."""

from store.db import Store, open_store

__all__ = ["Store", "open_store"]
