"""The analysis engine: pure statistics over per-tick increments (part of the decision core)."""
