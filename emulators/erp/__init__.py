"""An ERP emulator: six reporting views (sales, receivables, payables, paid, received, stock).

Rows are generated on demand from (seed, company, view, index), so a view of any size costs
nothing until it is read; only rows changed since startup are stored.

Data API (`Authorization: Bearer <token>`; a token reads only its own company):

- `GET /v1/companies/{company}/views/{view}?start_date=&end_date=&updated_since=&after=&limit=`
  one keyset page in id order: `{"view", "company", "items", "next_cursor", "count"}`, where
  `count` is the number of items on this page and `next_cursor` (the page's last id, null on
  the last page) is passed back as `after`.
- `GET /v1/companies/{company}/views/{view}/count?start_date=&end_date=&updated_since=`
- `GET /v1/companies/{company}/views/{view}/{id}`: the row plus `details`.

Control (`/_emulator/...`, no auth): `health`, `info`, `rows/{company}/{view}/touch`,
`faults` (GET/PUT/DELETE), `stats`, `reset`. Run with `python -m emulators.erp`.
"""
