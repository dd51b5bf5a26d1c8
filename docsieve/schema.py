"""The store's schema as SQLAlchemy Core describes it, for queries: the records and their stories, and the
bookkeeping tables (failures, fetch validators, source claims, what the fingerprints were made with).
The Alembic migrations (``docsieve/migrations``) are what builds it; ``tests/test_store.py`` holds the
two equal. With the few SQL helpers both the store and its bookkeeping use."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from docsieve.models import LANGUAGE_MAX_CHARS, PUBLISHED_MAX_CHARS

metadata = sa.MetaData()

records = sa.Table(
    "records",
    metadata,
    # Arrival order, assigned by the database: the first stored copy of a story is its canonical record.
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(20), nullable=False, unique=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("duplicate_of", sa.String(20), nullable=True),
    sa.Column("similarity", sa.Float, nullable=True),
    sa.Column("method", sa.String(16), nullable=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("language", sa.String(LANGUAGE_MAX_CHARS), nullable=True),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("images", sa.Text, nullable=False, default="[]"),  # JSON list of URLs
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("published", sa.String(PUBLISHED_MAX_CHARS), nullable=True),
    sa.Column("author", sa.Text, nullable=True),
    sa.Column("outlet", sa.Text, nullable=True),  # the publisher a batch names (migration 0007)
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # Stories (migration 0008): the story of every stored record, and for a copy its overlap with the
    # story's canonical record (None where that was not measured: records stored before 0008).
    sa.Column("story_id", sa.String(20), nullable=True),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),  # ``published`` as a UTC instant
    sa.Column("jaccard", sa.Float, nullable=True),
    sa.Column("containment", sa.Float, nullable=True),
    # When the record was stored or its story or link last changed (export --since).
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("shingles", sa.LargeBinary, nullable=True),  # sorted unique uint32, for verification
    sa.Column("index_keys", sa.LargeBinary, nullable=True),  # int64 LSH band and sample keys
    # uint32: the shingle set's size, then its bin minima (migration 0011; the set itself is made again
    # from the text, and ``shingles`` is kept only by records stored before).
    sa.Column("sketch", sa.LargeBinary, nullable=True),
    sa.Index("ix_records_content_hash", "content_hash"),
    sa.Index("ix_records_status", "status"),
    sa.Index("ix_records_story_id", "story_id"),
    sa.Index("ix_records_changed_at", "changed_at"),
)

# A story: one canonical record and its copies. The id stays when the canonical changes.
stories = sa.Table(
    "stories",
    metadata,
    sa.Column("id", sa.String(20), primary_key=True),
    sa.Column("canonical_id", sa.String(20), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # The last record seq of the batch that last changed the story (migration 0014): what a decision read and
    # others changed meanwhile (``Pipeline.store_prepared``).
    sa.Column("changed_seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=True),
    # A story found to be one with another gave it its records and says which (migration 0018): it has no records.
    sa.Column("merged_into", sa.String(20), nullable=True),
    sa.Index("ix_stories_changed_at", "changed_at"),
    sa.Index("ix_stories_changed_seq", "changed_seq"),
    sa.Index("ix_stories_merged_into", "merged_into"),
)

# A roundup record holds other stories: it is not a copy of them, it contains them.
contains = sa.Table(
    "contains",
    metadata,
    sa.Column("record_id", sa.String(20), primary_key=True),
    sa.Column("story_id", sa.String(20), primary_key=True),
    sa.Column("containment", sa.Float, nullable=True),  # of the story's canonical inside the record
    # A roundup holds stories it is no copy of; otherwise the record is a copy of its own story and
    # carries another's item too. Only roundups keep later items out of their story (docsieve/stories.py).
    sa.Column("roundup", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("ix_contains_story_id", "story_id"),
)

# Takedowns: the record's text and fingerprints are gone; this row says when and why.
deletions = sa.Table(
    "deletions",
    metadata,
    # A record can be taken down, ingested again and taken down again: one row each time.
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(20), nullable=False),
    sa.Column("story_id", sa.String(20), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# How many different texts hold each shingle (template boilerplate), as an append-only log of the texts
# each batch adds, which every process counts from where it last looked (docsieve/templates.py).
shingle_counts = sa.Table(
    "shingle_counts",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("counts", sa.LargeBinary, nullable=False),  # uint32 shingle ids of the texts, one after another
)

# The template counts as of a ``shingle_counts`` row (its seq), zstd-compressed uint16 counters (zlib before): a process
# starts from the newest and the rows after it; the rows it covers are deleted when it is written.
shingle_count_snapshots = sa.Table(
    "shingle_count_snapshots",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("counts", sa.LargeBinary, nullable=False),
)

# Tasks of the deployment that failed for good, for a person to see (and, later, retry).
failures = sa.Table(
    "failures",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(64), nullable=False),
    sa.Column("task", sa.String(100), nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("sources", sa.Text, nullable=False),  # JSON list of the sources in the task
    sa.Column("payload", sa.Text, nullable=False),  # the task's messages (JSON), to retry them
    sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # Set by `docsieve retry`: when, and the id of the task that carries the messages again.
    sa.Column("retried_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("retry_task_id", sa.String(64), nullable=True),
)

# What the stored fingerprints were made with: a store refuses settings that would make others.
meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Web ingestion: the validators of each fetched URL, so the next fetch can be conditional (a 304 costs
# nothing), and the entries of polled sources already seen, so each is enqueued once.
fetch_state = sa.Table(
    "fetch_state",
    metadata,
    sa.Column("url_hash", sa.String(64), primary_key=True),  # SHA-256 of the canonical URL: URLs can be long
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("etag", sa.Text, nullable=True),
    sa.Column("last_modified", sa.Text, nullable=True),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

source_entries = sa.Table(
    "source_entries",
    metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # Epoch seconds. Claimed, then marked sent once its task is queued: a claim never marked sent belongs
    # to a poll that died in between, and is given out again after CLAIM_STALE_AFTER.
    sa.Column("claimed_at", sa.Float, nullable=False),
    sa.Column("sent_at", sa.Float, nullable=True),
)

# API keys (docsieve/keys.py): only a key's SHA-256 is kept; the key itself is shown once, when made.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),  # the key's public part, which finds its row
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

# Bound parameters per statement stay well below SQLite's limit (32766) and PostgreSQL's (65535).
CHUNK = 5000


def upsert_insert(conn: sa.Connection, table: sa.Table):
    """An INSERT with ON CONFLICT, in the connection's dialect (both SQLite and PostgreSQL have it)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def sha256_hex(text: str) -> str:
    """Of the text's bytes; a file name that is not UTF-8 (its bytes as lone surrogates) has its own."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
