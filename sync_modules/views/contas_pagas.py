"""`vw_contas_pagas` (paid_payables) → table `erp_contas_pagas`."""

from sync_modules.base import SyncModule, record_table
from sync_modules.registry import register

MODULE = register(
    SyncModule(
        name="contas_pagas",
        view="vw_contas_pagas",
        date_field="data_pagamento",
        table=record_table("erp_contas_pagas"),
        description="paid_payables",
    )
)
