"""Sinks: where events leave the stream. Each is idempotent on `event_id`."""
