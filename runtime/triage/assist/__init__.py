"""Assisted diagnosis: providers that propose hypotheses and declared actions for an incident."""
