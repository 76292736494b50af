"""`vw_estoque` (stock) → table `erp_estoque`."""

from sync_modules.base import SyncModule, record_table
from sync_modules.registry import register

MODULE = register(
    SyncModule(
        name="estoque",
        view="vw_estoque",
        date_field="data_posicao",
        table=record_table("erp_estoque"),
        description="stock",
    )
)
