"""Every message of every conversation, in the order things happened."""
