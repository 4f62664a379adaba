"""The CI latency gate: its decision (a one-sided test on side-by-side rounds), its run and its reports."""
