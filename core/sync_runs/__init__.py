"""Sync runs, in one place: what the API's runs and schedules routes and the sync activities
share.

- `store`: the `sync_runs` rows and their modules and logs as the API reads them, and the run
  record written before a workflow exists (created, or ended when it can't start).
- `start`: a run's workflow input (one builder for runs started by the API and by a
  schedule), its start, cancel, and the schedule that starts incremental runs.

The HTTP shapes (`api.schemas.sync_runs`) and the routes (`api.routes.sync_runs`,
`api.routes.schedules`) sit on top; nothing here imports `api` or `workflows`.
"""
