"""The Litestar HTTP interface."""
