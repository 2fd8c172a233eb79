"""DynamoDB adapters over one table (single-table design)."""
