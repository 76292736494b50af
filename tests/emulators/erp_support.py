"""Helpers for the ERP emulator tests: starting it as a child process, and walking views."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx

from devstack.processes import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "acme-token"
OTHER_TOKEN = "globex-token"
TOKENS = {TOKEN: "acme", OTHER_TOKEN: "globex"}
VIEWS = (
    "vw_vendas",
    "vw_contas_receber_posicao",
    "vw_contas_pagar",
    "vw_contas_pagas",
    "vw_contas_recebidas",
    "vw_estoque",
)
DATE_FIELDS = {
    "vw_vendas": "data_venda",
    "vw_contas_receber_posicao": "data_vencimento",
    "vw_contas_pagar": "data_vencimento",
    "vw_contas_pagas": "data_pagamento",
    "vw_contas_recebidas": "data_recebimento",
    "vw_estoque": "data_posicao",
}


def erp_process(name: str, log_dir: Path, **settings: object) -> tuple[ManagedProcess, str]:
    """An emulator child process (not started yet) and its base URL; settings as in the config."""
    env = {
        f"ERP_EMULATOR_{key.upper()}": value if isinstance(value, str) else json.dumps(value)
        for key, value in {"tokens": TOKENS, **settings}.items()
    }
    port = free_port()
    args = [sys.executable, "-m", "emulators.erp", "--host", "127.0.0.1", "--port", str(port)]
    process = ManagedProcess(name, args, log_dir=log_dir, env=env, cwd=ROOT)
    return process, f"http://127.0.0.1:{port}"


def rows_path(view: str, company: str = "acme") -> str:
    return f"/v1/companies/{company}/views/{view}"


def walk(
    client: httpx.Client, view: str, *, limit: int, company: str = "acme", **filters: str
) -> list[dict[str, Any]]:
    """Every row of a listing, following `next_cursor` page by page."""
    items: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": limit, **filters}
    while True:
        response = client.get(rows_path(view, company), params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["count"] == len(page["items"]) <= limit
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        assert page["next_cursor"] == page["items"][-1]["id"]
        params["after"] = page["next_cursor"]


def count(client: httpx.Client, view: str, company: str = "acme", **filters: str) -> int:
    response = client.get(f"{rows_path(view, company)}/count", params=filters)
    assert response.status_code == 200, response.text
    total: int = response.json()["count"]
    return total
