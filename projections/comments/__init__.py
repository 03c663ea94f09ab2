"""The comments on each account's media, as the CRM lists them."""
