"""Outboxes: what must leave dmledger (replies to Instagram, notifications to the CRM)."""
