"""Plumbing every package may use: settings, logging, Postgres (pools, migrations), Kafka (topics,
producer, partitioner), ids, the TTL cache, the retry taxonomy and Standard Webhooks signing."""
