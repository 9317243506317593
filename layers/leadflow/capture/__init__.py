"""Capture: the public surface a website talks to. The pixel, clicks, ``POST /events``, sign-up
forms (with their abuse protection), signed server events and the static web assets; everything
it records goes through ``leadflow.events`` and ``leadflow.contacts``."""
