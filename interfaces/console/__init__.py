"""The browser console at `/console`: server-rendered pages over the same use cases as the REST API."""
