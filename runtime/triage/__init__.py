"""Triage: the learned severity classifier, impact analysis, similar incidents and assisted diagnosis."""
