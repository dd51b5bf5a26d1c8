"""Periodic polling of sources (feeds, sitemaps, folders) on a Celery beat schedule.

The sources file (``DOCSIEVE_SOURCES_FILE``, default ``sources.toml``) is TOML, one table per source::

    [[source]]
    name = "example-news"       # unique; the entries already seen are remembered under this name
    kind = "feed"               # feed (RSS/Atom), sitemap (urlset, Google News, or index), folder
    location = "https://news.example.org/rss.xml"
    interval = 600              # seconds between polls; default 900, at least 10

    [[source]]
    name = "inbox"
    kind = "folder"
    location = "incoming"       # relative to the sources file; an edited file counts as new

``docsieve scheduler`` (``run_scheduler``) runs beat with ``SourcesScheduler``: one entry per source,
task ``docsieve.poll_source`` on the I/O queue, the file read again whenever it changes, and a leader
lock in Redis so that a second scheduler started by mistake sends nothing (``scheduler/beat.py``). The
task (``scheduler/tasks.py``) lists the source's entries, claims them in the store and sends the new
ones to be fetched (pages) or ingested (files); the core is ``docsieve/sources.py``.
"""
