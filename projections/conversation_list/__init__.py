"""The conversation list of each account: who, status, last message, unread, reply windows."""
