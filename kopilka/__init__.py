"""Kopilka shared plumbing: settings, topic registry, ids, database, local services and the CLI."""
