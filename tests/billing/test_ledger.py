"""The ledger: balanced transactions, spending order, idempotency, and verification."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from suanli.billing.funds import (
    Funds,
    InsufficientFundsError,
    Voucher,
    can_afford,
    require_funds,
    spendable,
)
from suanli.billing.ledger import (
    CASH,
    COST_OF_REVENUE,
    PROMOTIONS,
    REVENUE,
    Posting,
    Transaction,
    TransactionConflictError,
    balances,
    charge,
    cost,
    expire_voucher,
    grant_voucher,
    is_repeat,
    parse_account,
    payable_account,
    prepaid_account,
    seen_balance,
    top_up,
    usage_external_id,
    usage_request_id,
    verify,
    voucher_account,
)
from suanli.billing.rating import Charge
from suanli.errors import ConflictError, ValidationError

T0 = datetime(2025, 3, 1, tzinfo=UTC)
P7 = prepaid_account(7)


def bill(amount: int, rid: str = "r1", model: str = "m", tenant: int = 7) -> Charge:
    return Charge(rid, tenant, model, amount, amount, 0, 0, "CNY")


def postings(tx: Transaction | None) -> dict[str, int]:
    assert tx is not None
    return {p.account: p.amount_micros for p in tx.postings}


# --- accounts ------------------------------------------------------------------------------


def test_account_names_round_trip() -> None:
    assert P7 == "tenant:7:prepaid"
    assert voucher_account(7, "spring-25") == "tenant:7:voucher:spring-25"
    assert voucher_account(7, 12) == "tenant:7:voucher:12"
    assert payable_account("bj-1") == "operator:bj-1:payable"
    a = parse_account("tenant:7:voucher:spring-25")
    assert (a.kind, a.tenant_id, a.voucher_id, a.credit_normal) == ("voucher", 7, "spring-25", True)
    assert parse_account("operator:bj-1:payable").data_center == "bj-1"
    assert parse_account(P7).kind == "prepaid"
    kinds = {n: parse_account(n).kind for n in (REVENUE, PROMOTIONS, COST_OF_REVENUE, CASH)}
    assert kinds == {
        REVENUE: "revenue",
        PROMOTIONS: "promotions",
        COST_OF_REVENUE: "cost_of_revenue",
        CASH: "cash",
    }
    assert [parse_account(n).credit_normal for n in (REVENUE, PROMOTIONS, CASH)] == [
        True,
        False,
        False,
    ]


@pytest.mark.parametrize(
    "name",
    [
        "tenant:x:prepaid",
        "tenant:-1:prepaid",
        "tenant:07:prepaid",
        "tenant:7:voucher:",
        "tenant:7:voucher:a:b",
        "operator::payable",
        "platform:profit",
        "external:cash:x",
        "",
    ],
)
def test_bad_account_names(name: str) -> None:
    with pytest.raises(ValidationError):
        parse_account(name)


def test_bad_account_parts() -> None:
    with pytest.raises(ValidationError):
        prepaid_account(-1)
    with pytest.raises(ValidationError):
        voucher_account(1, "a:b")
    with pytest.raises(ValidationError):
        payable_account("has space")


def test_seen_balance_of_credit_normal_accounts_is_negated() -> None:
    tx = top_up(7, 100, "CNY", "pay-1", T0)
    raw = balances([tx])
    assert raw == {CASH: 100, P7: -100}
    assert seen_balance(P7, raw[P7]) == 100
    assert seen_balance(CASH, raw[CASH]) == 100


# --- builders ------------------------------------------------------------------------------


def test_builders_post_the_documented_sides() -> None:
    assert postings(top_up(7, 100, "cny", "p", T0)) == {CASH: 100, P7: -100}
    v = voucher_account(7, "v1")
    assert postings(grant_voucher(7, "v1", 50, "CNY", "g", T0)) == {PROMOTIONS: 50, v: -50}
    assert postings(expire_voucher(7, "v1", 20, "CNY", "e", T0)) == {v: 20, PROMOTIONS: -20}
    assert expire_voucher(7, "v1", 0, "CNY", "e", T0) is None
    payable = payable_account("bj-1")
    assert postings(cost("bj-1", 30, "CNY", "c", T0)) == {COST_OF_REVENUE: 30, payable: -30}
    assert top_up(7, 100, "cny", "p", T0).postings[0].currency == "CNY"


@pytest.mark.parametrize("amount", [0, -5, True, 2**63])
def test_builders_refuse_bad_amounts(amount: int) -> None:
    with pytest.raises(ValidationError):
        top_up(7, amount, "CNY", "p", T0)


def test_builders_refuse_bad_ids_and_currencies() -> None:
    with pytest.raises(ValidationError, match="external id"):
        top_up(7, 1, "CNY", "", T0)
    with pytest.raises(ValidationError, match="external id"):
        top_up(7, 1, "CNY", "x" * 129, T0)
    top_up(7, 1, "CNY", "x" * 128, T0)
    with pytest.raises(ValidationError, match="currency"):
        top_up(7, 1, "XXX", "p", T0)
    with pytest.raises(ValidationError, match="usage charges"):
        top_up(7, 1, "CNY", "usage:r1", T0)


# --- transactions on their own -------------------------------------------------------------


def tx_of(*posts: tuple[str, int, str], ext: str = "t", kind: str = "top_up") -> Transaction:
    return Transaction(ext, kind, tuple(Posting(*p) for p in posts), T0)


@pytest.mark.parametrize(
    ("tx", "fragment"),
    [
        (tx_of((CASH, 5, "CNY"), (P7, -4, "CNY")), "CNY postings sum to 1"),
        (tx_of((CASH, 5, "CNY")), "at least two"),
        (tx_of(), "at least two"),
        (tx_of((CASH, 0, "CNY"), (P7, 0, "CNY")), "zero"),
        (tx_of((CASH, 5, "CNY"), (P7, -5, "USD")), "USD postings sum to -5"),
        (tx_of((CASH, 5, "CNY"), ("tenant:7", -5, "CNY")), "not a ledger account"),
        (tx_of((CASH, 5, "cny"), (P7, -5, "cny")), "capitals"),
        (tx_of((CASH, 5, "CNY"), (P7, -5, "CNY"), ext=""), "external id"),
        (tx_of((CASH, 5, "CNY"), (P7, -5, "CNY"), kind="Top Up"), "kind"),
        (tx_of((CASH, 5, "CNY"), (P7, -5, "CNY"), kind="usage"), "usage charge's external id"),
    ],
)
def test_invalid_transactions(tx: Transaction, fragment: str) -> None:
    assert any(fragment in p for p in tx.problems()), tx.problems()
    with pytest.raises(ValidationError, match=fragment):
        tx.validate()


def test_balanced_per_currency() -> None:
    fx = tx_of((CASH, 5, "CNY"), (P7, -5, "CNY"), (CASH, 1, "USD"), (prepaid_account(8), -1, "USD"))
    assert fx.problems() == []


def test_fingerprint_is_the_content() -> None:
    a = top_up(7, 100, "CNY", "p", T0)
    swapped = replace(a, postings=tuple(reversed(a.postings)), memo="another memo")
    same_moment = replace(a, at=T0.astimezone(timezone(timedelta(hours=8))))
    naive = replace(a, at=T0.replace(tzinfo=None))
    assert a.fingerprint() == swapped.fingerprint() == same_moment.fingerprint()
    assert a.fingerprint() == naive.fingerprint()
    assert len(a.fingerprint()) == 64
    for other in (
        top_up(7, 101, "CNY", "p", T0),
        top_up(8, 100, "CNY", "p", T0),
        top_up(7, 100, "USD", "p", T0),
        top_up(7, 100, "CNY", "p", T0 + timedelta(microseconds=1)),
        replace(a, kind="refund"),
    ):
        assert other.fingerprint() != a.fingerprint()


def test_same_id_same_content_is_a_no_op_different_content_an_error() -> None:
    a = top_up(7, 100, "CNY", "p", T0)
    assert is_repeat(a, replace(a, memo="retry"))
    assert not is_repeat(a, top_up(7, 100, "CNY", "q", T0))
    with pytest.raises(TransactionConflictError) as info:
        is_repeat(a, top_up(7, 200, "CNY", "p", T0))
    assert isinstance(info.value, ConflictError)


def test_usage_ids() -> None:
    assert usage_external_id("abc") == "usage:abc"
    assert usage_request_id("usage:abc") == "abc"
    assert usage_request_id("usage:") is None
    assert usage_request_id("pay-1") is None


# --- charging ------------------------------------------------------------------------------

LATER = T0 + timedelta(days=30)
SOON = T0 + timedelta(days=1)


def test_vouchers_pay_before_prepaid_earliest_expiry_first() -> None:
    funds = Funds(
        7,
        "CNY",
        1000,
        (
            Voucher("late", 300, LATER),
            Voucher("forever", 300, None),
            Voucher("soon", 100, SOON),
        ),
    )
    tx = charge(bill(600), funds, T0)
    assert postings(tx) == {
        voucher_account(7, "soon"): 100,
        voucher_account(7, "late"): 300,
        voucher_account(7, "forever"): 200,
        REVENUE: -600,
    }
    assert tx is not None
    assert (tx.external_id, tx.kind, tx.at) == ("usage:r1", "usage", T0)
    tx = charge(bill(900), funds, T0)
    assert postings(tx)[P7] == 200
    assert postings(tx)[REVENUE] == -900


def test_expired_vouchers_are_not_spent() -> None:
    funds = Funds(7, "CNY", 1000, (Voucher("old", 500, T0), Voucher("new", 500, SOON)))
    assert postings(charge(bill(600), funds, T0)) == {
        voucher_account(7, "new"): 500,
        P7: 100,
        REVENUE: -600,
    }  # "old" expires at T0 exactly: no longer usable then


def test_product_limited_vouchers_only_pay_for_their_models() -> None:
    v3_only = Voucher("v3", 500, None, frozenset({"deepseek-v3"}))
    funds = Funds(7, "CNY", 1000, (v3_only,))
    assert postings(charge(bill(100, model="qwen"), funds, T0)) == {P7: 100, REVENUE: -100}
    assert postings(charge(bill(100, model="deepseek-v3"), funds, T0)) == {
        voucher_account(7, "v3"): 100,
        REVENUE: -100,
    }
    assert spendable(funds, "qwen", T0) == 1000
    assert spendable(funds, "deepseek-v3", T0) == 1500


def test_prepaid_first_when_asked_and_overdraft_is_posted() -> None:
    funds = Funds(7, "CNY", 100, (Voucher("v", 50, None),))
    assert postings(charge(bill(120), funds, T0, prefer_vouchers=False)) == {
        P7: 100,
        voucher_account(7, "v"): 20,
        REVENUE: -120,
    }
    # delivered usage is a debt: it is posted even beyond every fund
    assert postings(charge(bill(500), funds, T0)) == {
        voucher_account(7, "v"): 50,
        P7: 450,
        REVENUE: -500,
    }
    broke = Funds(7, "CNY", -30)
    assert postings(charge(bill(10), broke, T0, prefer_vouchers=False)) == {P7: 10, REVENUE: -10}


def test_free_requests_post_nothing_and_mismatches_are_refused() -> None:
    funds = Funds(7, "CNY", 0)
    assert charge(bill(0), funds, T0) is None
    with pytest.raises(ValidationError, match="tenant 8"):
        charge(bill(5, tenant=8), funds, T0)
    with pytest.raises(ValidationError, match="USD"):
        charge(replace(bill(5), currency="USD"), funds, T0)


def test_can_afford_and_require_funds() -> None:
    funds = Funds(7, "CNY", 100, (Voucher("v", 50, SOON, frozenset({"m"})),))
    assert can_afford(funds, 150, 0, "m", T0)
    assert not can_afford(funds, 151, 0, "m", T0)
    assert can_afford(funds, 151, 1, "m", T0)
    assert not can_afford(funds, 101, 0, "other", T0)
    assert not can_afford(funds, 101, 0, "m", SOON)  # the voucher has expired
    require_funds(funds, 150, 0, "m", T0)
    with pytest.raises(InsufficientFundsError) as info:
        require_funds(funds, 400, 200, "m", T0)
    assert info.value.shortfall_micros == 50
    assert "0.00005 CNY" in info.value.message
    overdrawn = Funds(7, "CNY", -500)
    assert spendable(overdrawn, "m", T0, credit_limit_micros=100) == 0


# --- verification --------------------------------------------------------------------------


def sample_ledger() -> list[Transaction]:
    funds = Funds(7, "CNY", 1000, (Voucher("v1", 200, SOON),))
    usage = charge(bill(300, rid="req-1"), funds, T0)
    assert usage is not None
    expiry = expire_voucher(7, "v1", 0, "CNY", "exp-v1", SOON)
    assert expiry is None
    return [
        top_up(7, 1000, "CNY", "pay-1", T0),
        grant_voucher(7, "v1", 200, "CNY", "grant-v1", T0),
        usage,
        cost("bj-1", 120, "CNY", "bill-bj-1-2025-03", T0),
    ]


def test_a_consistent_ledger_has_no_problems() -> None:
    txs = sample_ledger()
    stored = balances(txs)
    assert verify(txs, stored, {}) == []
    assert verify(txs) == []
    assert sum(stored.values()) == 0
    assert seen_balance(P7, stored[P7]) == 900
    assert seen_balance(REVENUE, stored[REVENUE]) == 300


def test_tampering_is_detected() -> None:
    txs = sample_ledger()
    stored = balances(txs)

    dropped = [*txs[:2], replace(txs[2], postings=txs[2].postings[1:]), txs[3]]
    assert any("sum to" in p for p in verify(dropped, None, {}))

    other = charge(bill(301, rid="req-1"), Funds(7, "CNY", 5000), T0)
    assert other is not None
    problems = verify([*txs, other], None, {})
    assert any("different transactions" in p for p in problems)
    assert any("'req-1' is charged 2 times" in p for p in problems)

    assert any("recorded 2 times" in p for p in verify([*txs, txs[0]], None, {}))

    edited = {**stored, P7: stored[P7] + 1}
    assert any("stored balance" in p and P7 in p for p in verify(txs, edited, {}))
    missing = {k: v for k, v in stored.items() if k != REVENUE}
    assert any(REVENUE in p for p in verify(txs, missing, {}))
    extra = {**stored, prepaid_account(99): -5}
    assert any("tenant:99" in p for p in verify(txs, extra, {}))


def test_overdrafts_and_overspent_vouchers_are_reported() -> None:
    big = charge(bill(1500, rid="req-2"), Funds(7, "CNY", 1000), T0)
    assert big is not None
    txs = [top_up(7, 1000, "CNY", "pay-1", T0), big]
    assert any("below its credit limit" in p for p in verify(txs, None, {}))
    assert verify(txs, None, {P7: 500}) == []
    assert any("credit limit" in p for p in verify(txs, None, {P7: 499}))

    v = voucher_account(7, "v")
    overspent = Transaction(
        "usage:x", "usage", (Posting(v, 10, "CNY"), Posting(REVENUE, -10, "CNY")), T0
    )
    assert any("overspent" in p for p in verify([overspent], None, {}))
    mixed = [top_up(7, 5, "CNY", "a", T0), top_up(7, 5, "USD", "b", T0)]
    assert any("several currencies" in p for p in verify(mixed, None, {}))


# --- random sequences ----------------------------------------------------------------------

MODELS = ("m1", "m2", "m3")
LIMITS = {prepaid_account(1): 0, prepaid_account(2): 5_000}
tenants = st.sampled_from([1, 2])


@dataclass(frozen=True)
class TopUp:
    tenant: int
    amount: int


@dataclass(frozen=True)
class Grant:
    tenant: int
    amount: int
    hours: int
    products: frozenset[str] | None


@dataclass(frozen=True)
class Spend:
    tenant: int
    model: str
    amount: int
    prefer_vouchers: bool


@dataclass(frozen=True)
class Bill:
    data_center: str
    amount: int


@dataclass(frozen=True)
class Tick:
    hours: int


Op = TopUp | Grant | Spend | Bill | Tick
ops = st.lists(
    st.one_of(
        st.builds(TopUp, tenants, st.integers(1, 10_000)),
        st.builds(
            Grant,
            tenants,
            st.integers(1, 5_000),
            st.integers(1, 20),
            st.none() | st.frozensets(st.sampled_from(MODELS), min_size=1),
        ),
        st.builds(Spend, tenants, st.sampled_from(MODELS), st.integers(0, 8_000), st.booleans()),
        st.builds(Spend, tenants, st.sampled_from(MODELS), st.integers(0, 8_000), st.booleans()),
        st.builds(Bill, st.sampled_from(["bj-1", "sh-2"]), st.integers(1, 3_000)),
        st.builds(Tick, st.integers(1, 5)),
    ),
    max_size=60,
)


class Books:
    """A ledger kept as a list, with each voucher's terms beside it."""

    def __init__(self) -> None:
        self.txs: list[Transaction] = []
        self.terms: dict[int, dict[str, Voucher]] = {1: {}, 2: {}}
        self.now = T0

    def funds(self, tenant: int) -> Funds:
        raw = balances(self.txs)
        account = prepaid_account(tenant)
        live = tuple(
            replace(v, remaining_micros=-raw.get(voucher_account(tenant, v.voucher_id), 0))
            for v in self.terms[tenant].values()
        )
        return Funds(tenant, "CNY", seen_balance(account, raw.get(account, 0)), live)

    def expire_due(self) -> None:
        for tenant, terms in self.terms.items():
            for v in self.funds(tenant).vouchers:
                if v.expires_at is not None and v.expires_at <= self.now:
                    ext = f"exp-{v.voucher_id}"
                    tx = expire_voucher(
                        tenant, v.voucher_id, v.remaining_micros, "CNY", ext, self.now
                    )
                    assert (tx is None) == (v.remaining_micros == 0)
                    self.txs += [tx] if tx else []
                    del terms[v.voucher_id]

    def spend(self, op: Spend, n: int) -> None:
        f = self.funds(op.tenant)
        limit = LIMITS[prepaid_account(op.tenant)]
        if not can_afford(f, op.amount, limit, op.model, self.now):
            event("refused: cannot afford")
            return
        c = Charge(f"req-{n}", op.tenant, op.model, op.amount, op.amount, 0, 0, "CNY")
        tx = charge(c, f, self.now, prefer_vouchers=op.prefer_vouchers)
        if tx is None:
            assert op.amount == 0
            return
        paid = postings(tx)
        from_vouchers = 0
        for account, amount in paid.items():
            parsed = parse_account(account)
            if parsed.kind == "voucher":  # only live vouchers, for their models, pay
                v = self.terms[op.tenant][parsed.voucher_id or ""]
                assert v.expires_at is None or self.now < v.expires_at
                assert v.products is None or op.model in v.products
                from_vouchers += amount
        usable = sum(v.remaining_micros for v in f.usable_vouchers(op.model, self.now))
        event("paid by voucher" if from_vouchers else "paid from prepaid only")
        if op.prefer_vouchers and paid.get(prepaid_account(op.tenant), 0) > 0:
            assert from_vouchers == usable  # prepaid pays only once vouchers are used up
        self.txs.append(tx)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_random_sequences_stay_balanced_and_verified(sequence: list[Op]) -> None:
    books = Books()
    for n, op in enumerate(sequence):
        if isinstance(op, TopUp):
            books.txs.append(top_up(op.tenant, op.amount, "CNY", f"pay-{n}", books.now))
        elif isinstance(op, Grant):
            vid = f"v{n}"
            ends = books.now + timedelta(hours=op.hours)
            books.terms[op.tenant][vid] = Voucher(vid, 0, ends, op.products)
            books.txs.append(grant_voucher(op.tenant, vid, op.amount, "CNY", f"g-{n}", books.now))
        elif isinstance(op, Spend):
            books.spend(op, n)
        elif isinstance(op, Bill):
            books.txs.append(cost(op.data_center, op.amount, "CNY", f"bill-{n}", books.now))
        else:
            books.now += timedelta(hours=op.hours)
            books.expire_due()

    txs = books.txs
    stored = balances(txs)
    assert all(tx.problems() == [] for tx in txs)
    assert verify(txs, stored, LIMITS) == []
    assert sum(stored.values()) == 0
    charged = sum(t.postings[-1].amount_micros for t in txs if t.kind == "usage")
    assert stored.get(REVENUE, 0) == charged
    assert stored.get(CASH, 0) == sum(
        t.postings[0].amount_micros for t in txs if t.kind == "top_up"
    )
    granted = sum(t.postings[0].amount_micros for t in txs if t.kind == "voucher_grant")
    expired = sum(t.postings[0].amount_micros for t in txs if t.kind == "voucher_expiry")
    assert stored.get(PROMOTIONS, 0) == granted - expired
    for tenant in (1, 2):
        f = books.funds(tenant)
        assert f.prepaid_micros >= -LIMITS[prepaid_account(tenant)]
        assert all(v.remaining_micros >= 0 for v in f.vouchers)
