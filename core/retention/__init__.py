"""Retention of stored outputs (OUTPUT_RETENTION_DAYS, per context).

- `contracts`: the cleanup workflow's activity name and shapes (plain data, sandbox-safe).
- `cleanup`: which jobs are due, which a project still shows, and the expiry itself.
"""
