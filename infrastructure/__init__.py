"""Adapters: settings, persistence, encryption; they implement the application's ports."""
