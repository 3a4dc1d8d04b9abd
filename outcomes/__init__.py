"""Outcomes by therapy course: responder definitions, rates with confidence intervals.

definitions   the three responder definitions (sEMG symmetry, clinician grade, patient-reported)
proportions   Wilson interval of a rate, Newcombe interval of a difference of rates
summary       rates per course type and definition, differences between course types, the table
coverage      how often the intervals cover the truth over simulated cohorts (ingest.cohort)
store         reading the per-patient outcome view of the database (migration 0016)
cli           `mimetic outcomes`, `mimetic cohort`, `mimetic bench outcomes`
"""
