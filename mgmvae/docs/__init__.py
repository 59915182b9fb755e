"""Every number in the docs from a committed snapshot (docs/results.md, "Where the numbers come from")."""
