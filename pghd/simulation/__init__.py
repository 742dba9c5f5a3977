"""Synthetic cohorts for demos, load and detector evaluation: readings plus episode labels.

Pure generation lives here; posting to the ingest API is ``pghd simulate``
(:mod:`pghd.commands.simulate`).
"""

from pghd.simulation.cohort import Cohort, generate_cohort, render
from pghd.simulation.episodes import Episode, EpisodeKind, Sample
from pghd.simulation.patient import PatientProfile

__all__ = [
    "Cohort",
    "Episode",
    "EpisodeKind",
    "PatientProfile",
    "Sample",
    "generate_cohort",
    "render",
]
