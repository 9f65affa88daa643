"""Exact per-mode integrals: the closed-form clock of d psi/d tau = psi^k (1 - psi^n)
(``mode_integrals``) and its tabulated inverse (``mode_tables``), shared by the deep linear families."""
