"""The browser console at `/console`: server-rendered pages over the REST API's use cases."""
