"""Use cases of dmledger: ingest webhooks, manage accounts, read the ledger."""
