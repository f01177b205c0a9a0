"""`make bench`: the figures the issues ask for, printed (never asserted)."""
