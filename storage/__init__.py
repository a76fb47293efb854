"""SQL storage: records, the async engine, the unit of work, migrations. Knows nothing of Slack."""
