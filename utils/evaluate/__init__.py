"""Scoring outputs for people: per-image CSV, score plots, the HTML report."""
