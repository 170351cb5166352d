"""Data: read instruction and preference data in the common formats into one canonical record type."""
