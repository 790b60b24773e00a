"""Crash triage: run inputs (runner) and build reports (report_model); crashes are classified and hashed by instrument.analysis."""
