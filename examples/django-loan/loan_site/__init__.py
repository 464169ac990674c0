"""A minimal Django site reproducing story A: a 100 ms loan quote memoized five ways."""
