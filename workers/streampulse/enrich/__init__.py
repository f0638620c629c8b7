"""Enrichment: raw posts -> model gateway -> the enriched topic."""
