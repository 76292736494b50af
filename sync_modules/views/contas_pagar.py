"""`vw_contas_pagar` (payables) → table `erp_contas_pagar`."""

from sync_modules.base import SyncModule, record_table
from sync_modules.registry import register

MODULE = register(
    SyncModule(
        name="contas_pagar",
        view="vw_contas_pagar",
        date_field="data_vencimento",
        table=record_table("erp_contas_pagar"),
        description="payables",
    )
)
