"""The dmledger domain: accounts and their Instagram conversations, as event-sourced aggregates."""
