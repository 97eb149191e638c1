"""The Postgres directories, read and written on request by the ingress, the worker and the CLI:
tenants and their credentials, customers and their identities, the tenant rules feed, the
expiry sweep, shops' outbound subscriptions (endpoints, chats, templates), the dead-letter store
and its redrive, and the retention of the tables that grow with traffic."""
