"""The HTTP edge: webhook ingress (checks, then publishes raw to Kafka) and the read API."""
