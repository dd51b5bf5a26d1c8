"""Periodic polling of sources (feeds, sitemaps, folders) on a Celery beat schedule.

The schedule itself arrives with the web-ingestion work; the package exists now so the layout and
imports are stable for the deployment.
"""
