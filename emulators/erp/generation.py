"""The fields and `details` of a row of each view, drawn from seeded random generators.

A generator gets two `random.Random`s: `stable`, seeded by the row alone, for what never
changes (who, what, how much), and `revised`, seeded by the row and its revision, for what a
touch changes. The field a touch changes cycles with the revision (`situacao`, or the stock
quantity), so every touch really changes it. Amounts are integer cents, served as decimal
strings with two places; `details` always add up to the row's totals.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from emulators.erp import vocabulary as vocab

Fields = dict[str, Any]


@dataclass(frozen=True)
class RowSeed:
    """Everything a generator may depend on; the same seed always gives the same row."""

    index: int
    business_date: date
    revision: int
    stable: random.Random
    revised: random.Random


Generator = Callable[[RowSeed], tuple[Fields, Fields]]


def money(cents: int) -> str:
    """Cents as a decimal string with two places (`1234` -> `"12.34"`)."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def split_cents(total: int, parts: int, rng: random.Random) -> list[int]:
    """`total` cut into `parts` non-negative amounts that add up to it exactly."""
    cuts = sorted(rng.randint(0, total) for _ in range(parts - 1))
    bounds = [0, *cuts, total]
    return [bounds[k + 1] - bounds[k] for k in range(parts)]


def cycled(options: tuple[str, ...], seed: RowSeed) -> str:
    """A value that starts at a per-row place in `options` and moves on with each revision."""
    start = seed.stable.randrange(len(options))
    return options[(start + seed.revision) % len(options)]


def _iso(day: date) -> str:
    return day.isoformat()


SALE_STATUSES = ("aprovado", "faturado", "entregue", "em_separacao", "cancelado")


def sale(seed: RowSeed) -> tuple[Fields, Fields]:
    rng = seed.stable
    party = vocab.customer(rng.randrange(vocab.CUSTOMER_COUNT))
    items: list[Fields] = []
    total = 0
    for line in range(1, rng.randint(1, 5) + 1):
        product = vocab.product(rng.randrange(vocab.SKU_COUNT))
        quantity = rng.randint(1, 24)
        total += product.unit_price_cents * quantity
        items.append(
            {
                "item": line,
                "sku": product.sku,
                "descricao": product.description,
                "unidade": product.unit,
                "quantidade": quantity,
                "valor_unitario": money(product.unit_price_cents),
                "valor_total": money(product.unit_price_cents * quantity),
            }
        )
    fields = {
        "numero_pedido": f"PED-{seed.index + 1:07d}",
        "cliente_nome": party.name,
        "cliente_documento": party.document,
        "vendedor": vocab.person(rng.randrange(60)),
        "canal": rng.choice(vocab.SALES_CHANNELS),
        "forma_pagamento": rng.choice(vocab.PAYMENT_METHODS),
        "quantidade_itens": len(items),
        "valor_total": money(total),
        "situacao": cycled(SALE_STATUSES, seed),
    }
    return fields, {"itens": items}


RECEIVABLE_STATUSES = ("aberto", "parcial", "vencido", "liquidado")


def receivable_position(seed: RowSeed) -> tuple[Fields, Fields]:
    rng = seed.stable
    party = vocab.customer(rng.randrange(vocab.CUSTOMER_COUNT))
    original = rng.randint(5_000, 2_500_000)
    installments = rng.randint(1, 6)
    status = cycled(RECEIVABLE_STATUSES, seed)
    received = {
        "aberto": 0,
        "vencido": 0,
        "parcial": seed.revised.randint(1, original - 1),
        "liquidado": original,
    }[status]
    issued = seed.business_date - timedelta(days=rng.randint(15, 90))
    payments = []
    if received:
        for amount in split_cents(received, seed.revised.randint(1, 3), seed.revised):
            paid_on = issued + timedelta(days=seed.revised.randint(1, 60))
            payments.append(
                {
                    "data": _iso(paid_on),
                    "valor": money(amount),
                    "forma": seed.revised.choice(vocab.PAYMENT_METHODS),
                }
            )
        payments.sort(key=lambda p: p["data"])
    fields = {
        "numero_titulo": f"TIT-{seed.index + 1:07d}",
        "parcela": f"{rng.randint(1, installments)}/{installments}",
        "cliente_nome": party.name,
        "cliente_documento": party.document,
        "data_emissao": _iso(issued),
        "valor_original": money(original),
        "valor_recebido": money(received),
        "saldo": money(original - received),
        "situacao": status,
    }
    return fields, {"historico_pagamentos": payments}


PAYABLE_STATUSES = ("aberto", "aprovado", "agendado", "em_atraso")


def payable(seed: RowSeed) -> tuple[Fields, Fields]:
    rng = seed.stable
    party = vocab.supplier(rng.randrange(vocab.SUPPLIER_COUNT))
    amount = rng.randint(2_000, 5_000_000)
    centers = rng.sample(vocab.COST_CENTERS, rng.randint(1, 3))
    shares = split_cents(amount, len(centers), rng)
    apportionment = [
        {
            "centro_custo": center,
            "percentual": f"{share * 100 / amount:.2f}",
            "valor": money(share),
        }
        for center, share in zip(centers, shares, strict=True)
    ]
    fields = {
        "numero_documento": f"NF-{rng.randint(1, 999_999):06d}",
        "fornecedor_nome": party.name,
        "fornecedor_documento": party.document,
        "categoria": rng.choice(vocab.EXPENSE_CATEGORIES),
        "data_emissao": _iso(seed.business_date - timedelta(days=rng.randint(5, 60))),
        "valor": money(amount),
        "situacao": cycled(PAYABLE_STATUSES, seed),
    }
    return fields, {"rateio": apportionment}


SETTLED_STATUSES = ("baixado", "conciliado")


def _settlement(seed: RowSeed, total: int, account: str) -> list[Fields]:
    entries = []
    parts = split_cents(total, seed.stable.choice((1, 1, 1, 2)), seed.stable)
    for number, amount in enumerate(parts, start=1):
        entries.append(
            {
                "data": _iso(seed.business_date),
                "valor": money(amount),
                "conta": account,
                "autenticacao": f"{seed.stable.getrandbits(40):010X}-{number}",
            }
        )
    return entries


def paid_bill(seed: RowSeed) -> tuple[Fields, Fields]:
    rng = seed.stable
    party = vocab.supplier(rng.randrange(vocab.SUPPLIER_COUNT))
    original = rng.randint(2_000, 5_000_000)
    late_days = rng.choice((0, 0, 0, 2, 5, 12))
    interest = original * late_days // 900  # about 1% a month, pro rata
    discount = 0 if late_days else rng.choice((0, 0, original // 50))
    paid = original + interest - discount
    account = rng.choice(vocab.BANK_ACCOUNTS)
    fields = {
        "numero_documento": f"NF-{rng.randint(1, 999_999):06d}",
        "fornecedor_nome": party.name,
        "fornecedor_documento": party.document,
        "categoria": rng.choice(vocab.EXPENSE_CATEGORIES),
        "data_vencimento": _iso(seed.business_date - timedelta(days=late_days)),
        "valor_original": money(original),
        "juros": money(interest),
        "desconto": money(discount),
        "valor_pago": money(paid),
        "forma_pagamento": rng.choice(vocab.PAYMENT_METHODS),
        "conta_bancaria": account,
        "situacao": cycled(SETTLED_STATUSES, seed),
    }
    return fields, {"baixas": _settlement(seed, paid, account)}


def received_payment(seed: RowSeed) -> tuple[Fields, Fields]:
    rng = seed.stable
    party = vocab.customer(rng.randrange(vocab.CUSTOMER_COUNT))
    original = rng.randint(5_000, 2_500_000)
    late_days = rng.choice((0, 0, 0, 3, 7, 20))
    interest = original * late_days // 900
    discount = 0 if late_days else rng.choice((0, 0, original // 50))
    received = original + interest - discount
    account = rng.choice(vocab.BANK_ACCOUNTS)
    fields = {
        "numero_titulo": f"TIT-{rng.randint(1, 9_999_999):07d}",
        "cliente_nome": party.name,
        "cliente_documento": party.document,
        "data_vencimento": _iso(seed.business_date - timedelta(days=late_days)),
        "valor_original": money(original),
        "juros": money(interest),
        "desconto": money(discount),
        "valor_recebido": money(received),
        "forma_recebimento": rng.choice(vocab.PAYMENT_METHODS),
        "conta_bancaria": account,
        "situacao": cycled(SETTLED_STATUSES, seed),
    }
    return fields, {"baixas": _settlement(seed, received, account)}


def stock_position(seed: RowSeed) -> tuple[Fields, Fields]:
    rng = seed.stable
    # Each row is one SKU in one warehouse; rows of a company repeat SKUs only across warehouses.
    product = vocab.product(seed.index % vocab.SKU_COUNT)
    warehouse = vocab.WAREHOUSES[seed.index // vocab.SKU_COUNT % len(vocab.WAREHOUSES)]
    base_quantity = rng.randint(0, 2_000)
    # A touch books an entry of this row's step: the quantity changes with every revision.
    quantity = base_quantity + seed.revision * rng.randint(1, 40)
    cost = product.unit_price_cents * rng.randint(55, 80) // 100
    movements: list[Fields] = []
    moved = 0
    for _ in range(rng.randint(1, 4)):
        delta = rng.choice((1, -1)) * rng.randint(1, 60)
        movements.append({"tipo": "entrada" if delta > 0 else "saida", "quantidade": delta})
        moved += delta
    if quantity - moved < 0:  # the opening balance can't be negative: book an adjustment
        movements.append({"tipo": "ajuste", "quantidade": quantity - moved})
        moved = quantity
    for back, movement in enumerate(reversed(movements)):
        movement["data"] = _iso(seed.business_date - timedelta(days=back))
    fields = {
        "sku": product.sku,
        "descricao": product.description,
        "unidade": product.unit,
        "deposito": warehouse,
        "quantidade": quantity,
        "custo_medio": money(cost),
        "valor_total": money(cost * quantity),
        "estoque_minimo": rng.choice((0, 10, 25, 50, 100)),
    }
    return fields, {"saldo_anterior": quantity - moved, "movimentacoes": movements}


GENERATORS: dict[str, Generator] = {
    "vw_vendas": sale,
    "vw_contas_receber_posicao": receivable_position,
    "vw_contas_pagar": payable,
    "vw_contas_pagas": paid_bill,
    "vw_contas_recebidas": received_payment,
    "vw_estoque": stock_position,
}
