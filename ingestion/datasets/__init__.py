"""One module per dataset beyond the core bronze tables: its schema, its transform, its checks.

``ingestion.schemas`` registers them (``TABLES``, ``SILVER_TABLES``); it is imported first so
that importing any dataset module on its own finds the registry complete.
"""

from ingestion import schemas  # noqa: F401 - registry first: see above
