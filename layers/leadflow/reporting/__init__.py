"""Reporting and analytics: counters maintained incrementally from the events stream (the ``report``
function), honest open/click classification, channel attribution, holdout lift, report building.

A report reads a fixed number of counter items (``leadflow.platform.tables.REPORTS``), never one per contact.
"""
