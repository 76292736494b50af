"""Brazilian-looking customers, suppliers, products and places, chosen by number.

Entities are functions of a catalogue number, so the same customer or SKU keeps its name,
CNPJ and price wherever a row mentions it (a sale and the stock of its SKU agree).
"""

from __future__ import annotations

from dataclasses import dataclass

FIRST_NAMES = (
    "Ana", "Bruno", "Carla", "Diego", "Eduarda", "Felipe", "Gabriela", "Henrique", "Isabela",
    "João", "Larissa", "Marcos", "Natália", "Otávio", "Paula", "Rafael", "Sofia", "Thiago",
    "Vitória", "William",
)  # fmt: skip
SURNAMES = (
    "Almeida", "Barbosa", "Cardoso", "Costa", "Ferreira", "Gomes", "Lima", "Martins",
    "Oliveira", "Pereira", "Ribeiro", "Rodrigues", "Santos", "Silva", "Souza",
)  # fmt: skip
TRADE_WORDS = (
    "Aurora", "Bandeirantes", "Central", "Cristal", "Horizonte", "Ipê", "Litoral", "Mantiqueira",
    "Nordeste", "Paulista", "Pioneira", "Planalto", "Primavera", "Sertão", "Tropical", "Vale",
)  # fmt: skip
CUSTOMER_TRADES = (
    "Comércio", "Distribuidora", "Mercado", "Farmácia", "Padaria", "Materiais de Construção",
    "Papelaria", "Auto Peças",
)  # fmt: skip
SUPPLIER_TRADES = (
    "Indústria", "Transportes", "Embalagens", "Energia", "Logística", "Serviços Contábeis",
    "Tecnologia", "Alimentos",
)  # fmt: skip
LEGAL_SUFFIXES = ("Ltda", "S.A.", "ME", "EIRELI")
PRODUCTS = (
    "Café torrado", "Arroz tipo 1", "Feijão carioca", "Óleo de soja", "Açúcar cristal",
    "Detergente", "Sabão em pó", "Papel toalha", "Caderno universitário",
    "Caneta esferográfica", "Cimento CP-II", "Tinta acrílica", "Parafuso sextavado",
    "Filtro de óleo", "Pastilha de freio", "Lâmpada LED", "Cabo flexível", "Garrafa térmica",
    "Copo descartável", "Luva nitrílica",
)  # fmt: skip
# Package variants and the unit each is sold by.
VARIANTS = (
    ("500g", "PCT"), ("1kg", "PCT"), ("5kg", "SC"), ("1L", "UN"), ("5L", "GL"),
    ("caixa c/ 12", "CX"), ("pacote c/ 50", "PCT"), ("unidade", "UN"),
)  # fmt: skip
WAREHOUSES = ("CD São Paulo", "CD Campinas", "Loja Centro", "Loja Norte", "CD Recife")
SALES_CHANNELS = ("loja", "e-commerce", "marketplace", "televendas")
PAYMENT_METHODS = ("pix", "boleto", "cartao_credito", "cartao_debito", "transferencia")
EXPENSE_CATEGORIES = (
    "fornecedores", "aluguel", "energia", "impostos", "folha", "servicos", "frete",
)  # fmt: skip
COST_CENTERS = ("administrativo", "comercial", "logistica", "producao", "ti")
BANK_ACCOUNTS = (
    "Banco do Brasil 1234-5 / 98765-4", "Itaú 0271 / 45120-8", "Bradesco 3390-1 / 7781-2",
    "Caixa 0655 / 00021455-3", "Santander 2101 / 13002214-7",
)  # fmt: skip

CUSTOMER_COUNT = 2_000
SUPPLIER_COUNT = 400
SKU_COUNT = len(PRODUCTS) * len(VARIANTS) * 25


@dataclass(frozen=True)
class Party:
    """A customer or supplier."""

    name: str
    document: str  # CNPJ, formatted


@dataclass(frozen=True)
class Product:
    sku: str
    description: str
    unit: str
    unit_price_cents: int


def cnpj(number: int) -> str:
    """A CNPJ with valid check digits (branch 0001), formatted `00.000.000/0001-00`."""
    digits = [int(c) for c in f"{number % 100_000_000:08d}0001"]
    for weights in ((5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2), (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)):
        rest = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
        digits.append(0 if rest < 2 else 11 - rest)
    s = "".join(map(str, digits))
    return f"{s[:2]}.{s[2:5]}.{s[5:8]}/{s[8:12]}-{s[12:]}"


def person(number: int) -> str:
    return f"{FIRST_NAMES[number % len(FIRST_NAMES)]} {SURNAMES[number // 7 % len(SURNAMES)]}"


def _company_name(number: int, trades: tuple[str, ...]) -> str:
    trade = trades[number % len(trades)]
    word = TRADE_WORDS[number // len(trades) % len(TRADE_WORDS)]
    family = SURNAMES[number // 11 % len(SURNAMES)]
    suffix = LEGAL_SUFFIXES[number // 3 % len(LEGAL_SUFFIXES)]
    return f"{trade} {word} {family} {suffix}"


def customer(number: int) -> Party:
    return Party(_company_name(number, CUSTOMER_TRADES), cnpj(10_000_000 + number * 7919))


def supplier(number: int) -> Party:
    return Party(_company_name(number, SUPPLIER_TRADES), cnpj(60_000_000 + number * 104_729))


def product(number: int) -> Product:
    name = PRODUCTS[number % len(PRODUCTS)]
    variant, unit = VARIANTS[number // len(PRODUCTS) % len(VARIANTS)]
    line = number // (len(PRODUCTS) * len(VARIANTS))
    description = f"{name} {variant}" + (f" linha {line}" if line else "")
    price = 250 + (number * 7_919) % 49_750  # R$ 2,50 to R$ 499,99
    return Product(f"SKU-{number:05d}", description, unit, price)
