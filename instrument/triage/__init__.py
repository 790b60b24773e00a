"""Crash triage: run inputs (runner), classify crashes (classify + rules.yaml), hash stacks (signature), build reports."""
