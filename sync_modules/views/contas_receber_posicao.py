"""`vw_contas_receber_posicao` (receivables_position) → table `erp_contas_receber_posicao`."""

from sync_modules.base import SyncModule, record_table
from sync_modules.registry import register

MODULE = register(
    SyncModule(
        name="contas_receber_posicao",
        view="vw_contas_receber_posicao",
        date_field="data_vencimento",
        table=record_table("erp_contas_receber_posicao"),
        description="receivables_position",
    )
)
