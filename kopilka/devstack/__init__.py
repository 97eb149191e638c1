"""The local service stack, for `make run` and the test session: real Kafka, Postgres and Redis
servers as child processes, the Kopilka processes on top of them, and the supervisor that
restarts whatever dies."""
