"""Outbound HTTP to URLs the system did not choose: provider outputs and webhook targets."""
