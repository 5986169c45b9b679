"""The keeper daemon and what it needs: decisions, the account index, screening, settings,
metrics and the status view."""
