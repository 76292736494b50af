"""The six reporting views: their names, id prefixes and business date fields.

Ids are the view's prefix and the row number zero-padded to nine digits (`V000000123`), so
string order is row order: the keyset pagination order of every listing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ID_DIGITS = 9


@dataclass(frozen=True)
class ViewSpec:
    name: str
    prefix: str
    date_field: str
    description: str

    def row_id(self, index: int) -> str:
        """The id of the row at 0-based `index` (ids count from 1)."""
        return f"{self.prefix}{index + 1:0{ID_DIGITS}d}"

    def index_of(self, row_id: str) -> int | None:
        """The 0-based index an id of this view names (maybe past the end), or None if malformed."""
        match = re.fullmatch(rf"{re.escape(self.prefix)}(\d{{{ID_DIGITS}}})", row_id)
        if match is None:
            return None
        return int(match.group(1)) - 1


VIEWS: dict[str, ViewSpec] = {
    spec.name: spec
    for spec in (
        ViewSpec("vw_vendas", "V", "data_venda", "sales"),
        ViewSpec("vw_contas_receber_posicao", "CR", "data_vencimento", "receivables position"),
        ViewSpec("vw_contas_pagar", "CP", "data_vencimento", "payables"),
        ViewSpec("vw_contas_pagas", "PG", "data_pagamento", "paid bills"),
        ViewSpec("vw_contas_recebidas", "RC", "data_recebimento", "received payments"),
        ViewSpec("vw_estoque", "E", "data_posicao", "stock position"),
    )
}
VIEW_NAMES: tuple[str, ...] = tuple(VIEWS)
