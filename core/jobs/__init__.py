"""Media jobs, in one place: what the API routes, the recovery route and the recovery sweep
share.

- `store`: the `jobs` table: reads, the forward-only status writes, adoption's records.
- `start`: a job's workflow input (one builder for new, restarted and adopted jobs), its start
  and the input as the provider gets it (links to our outputs signed).
- `cancel`: the cancel signal, and cancelling a job that has no workflow.

The HTTP shapes (`api.schemas.jobs`) and the routes (`api.routes.jobs`) sit on top; nothing
here imports `api` or `workflows` (workflows are started and signalled by name).
"""
