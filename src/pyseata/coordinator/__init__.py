"""The Transaction Coordinator (TC): sessions, global row locks, recovery and their stores."""
