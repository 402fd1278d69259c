"""Lineage, sealing and verification of the exchange log, evidence export and replay."""
