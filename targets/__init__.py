"""Artifacts rendered from the checked ruleset: Alertmanager, PagerDuty, Slack."""
