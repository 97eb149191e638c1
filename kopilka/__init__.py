"""Kopilka's core, by role: core/ (plumbing every package may use), directory/ (the Postgres
directories read and written on request), devstack/ (the local service stack) and cli/ (the
`kopilka` command line)."""
