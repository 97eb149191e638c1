"""The command line, `kopilka` (main.py; `python -m kopilka`): tenants, the processes (ingest,
worker, dispatch, run), dead letters, outbound endpoints and Telegram, reconcile, and the replay
commands with their progress bar. Nothing but the CLI imports this package."""
