"""Reliability and security suite (issue 7): fault injection, fuzzing, secrets, no orphans.

The CI-sized set runs by default; ``--soak`` runs the issue's full trial counts.
``--write-summary`` writes the scenario table to ``docs/reliability.md``.
"""
