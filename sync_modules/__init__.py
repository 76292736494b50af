"""Sync modules: one ERP view each, behind one interface, found through the registry.

Adding a view is one small file in `views/` (a `SyncModule` registered with `@register`) plus
its test; its table joins the schema through `record_table` and an Alembic migration.
"""
