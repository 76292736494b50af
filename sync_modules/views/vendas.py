"""`vw_vendas` (sales) → table `erp_vendas`."""

from sync_modules.base import SyncModule, record_table
from sync_modules.registry import register

MODULE = register(
    SyncModule(
        name="vendas",
        view="vw_vendas",
        date_field="data_venda",
        table=record_table("erp_vendas"),
        description="sales",
    )
)
