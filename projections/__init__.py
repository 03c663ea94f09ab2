"""Read models built from the event log (message history, conversation lists, outboxes)."""
