"""`vw_contas_recebidas` (received_receivables) → table `erp_contas_recebidas`."""

from sync_modules.base import SyncModule, record_table
from sync_modules.registry import register

MODULE = register(
    SyncModule(
        name="contas_recebidas",
        view="vw_contas_recebidas",
        date_field="data_recebimento",
        table=record_table("erp_contas_recebidas"),
        description="received_receivables",
    )
)
