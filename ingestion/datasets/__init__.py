"""One module per dataset beyond the core bronze tables: its schema, its transform, its checks."""
