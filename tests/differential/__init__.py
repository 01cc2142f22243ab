"""Differential tests: the same scripted scenarios against the reference server and ours."""
