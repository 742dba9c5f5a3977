"""Synthetic cohorts for demos, load and detector evaluation: readings plus episode labels.

Readings look like what devices send (bare heart-rate samples, steps as counts over
intervals, sleep as sessions, hardly any ``context``) and come in the order they arrive,
late phone syncs included (:meth:`Cohort.arrivals`); ``generate_cohort(..., labels=True)``
adds the true context to every reading instead (oracle labels). Pure generation lives here;
posting to the ingest API is ``pghd simulate`` (:mod:`pghd.commands.simulate`).
"""

from pghd.simulation.cohort import Arrival, Cohort, generate_cohort, render
from pghd.simulation.episodes import Episode, EpisodeKind, Sample
from pghd.simulation.patient import PatientProfile, StepFormat

__all__ = [
    "Arrival",
    "Cohort",
    "Episode",
    "EpisodeKind",
    "PatientProfile",
    "Sample",
    "StepFormat",
    "generate_cohort",
    "render",
]
