"""How often the reported intervals cover the truth: simulated cohorts over many seeds
(pure; `mimetic outcomes coverage` prints it, tests/outcomes checks it).

For each seed, a cohort of ``patients`` (ingest.cohort, course types in turn) is measured
by the three definitions (sEMG on the noise-free |AI| per session; grades and PROs with
their simulated rater and questionnaire noise), summarised with Wilson intervals, and each
interval is checked against the population rate that definition estimates
(ingest.cohort.expected_rates). Nominal coverage is 95 %; Wilson's is close to it at these
n, a little above or below depending on n and p (Newcombe 1998).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ingest.cohort import DEFAULT_EFFECTS, ExpectedRate, cohort, expected_rates, true_abs_ai
from outcomes.definitions import Definition, semg_symmetry
from outcomes.summary import OutcomeTable, PatientResult, summarise


@dataclass(frozen=True)
class Coverage:
    seeds: int
    patients: int
    #: (definition, course type) -> fraction of seeds whose interval held the expected rate
    covered: dict[tuple[Definition, str], float]
    #: (definition, course type) -> fraction of seeds whose interval held the LATENT rate
    covered_latent: dict[tuple[Definition, str], float]

    @property
    def overall(self) -> float:
        return sum(self.covered.values()) / len(self.covered)


def simulated_results(n_patients: int, seed: int,
                      effects: Mapping[str, float] = DEFAULT_EFFECTS) -> list[PatientResult]:
    """The cohort's patients measured by the three definitions."""
    out = []
    for p in cohort(n_patients, seed, effects):
        by = p.responder_by()
        out.append(PatientResult(p.therapy_type, semg_symmetry(true_abs_ai(p)).responder,
                                 by[Definition.GRADE], by[Definition.PRO]))
    return out


def covers(table: OutcomeTable, expected: Mapping[str, ExpectedRate], latent: bool = False
           ) -> dict[tuple[Definition, str], bool]:
    """Per (definition, course type): does the reported interval hold the true rate?"""
    out = {}
    for g in table.rates:
        e = expected[g.therapy_type]
        truth = e.latent if latent else e.by_definition[g.definition]
        out[(g.definition, g.therapy_type)] = g.rate.low <= truth <= g.rate.high
    return out


def coverage(seeds: int, patients: int, effects: Mapping[str, float] = DEFAULT_EFFECTS,
             draws: int = 5_000, first_seed: int = 1) -> Coverage:
    expected = expected_rates(effects, draws)
    hits: dict[tuple[Definition, str], int] = {}
    hits_latent: dict[tuple[Definition, str], int] = {}
    for s in range(first_seed, first_seed + seeds):
        table = summarise(simulated_results(patients, s, effects))
        for k, v in covers(table, expected).items():
            hits[k] = hits.get(k, 0) + int(v)
        for k, v in covers(table, expected, latent=True).items():
            hits_latent[k] = hits_latent.get(k, 0) + int(v)
    return Coverage(seeds, patients, {k: v / seeds for k, v in hits.items()},
                    {k: v / seeds for k, v in hits_latent.items()})
