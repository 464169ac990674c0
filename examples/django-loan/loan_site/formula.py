"""The loan quote itself: pure arithmetic, no Django, so the load generator can check answers.

Inputs are integers (won, basis points, months) so that every process computes bit-identical
results; the answer is a dict of ints, which every cache codec in the example can carry.
"""

from __future__ import annotations

LIMITS = {
    "user_id": (1, 10**12),
    "amount": (1, 10**13),
    "rate": (0, 100_000),
    "term": (1, 600),
}


def quote(user_id: int, amount: int, rate: int, term: int) -> dict:
    """Monthly payment of an amortized loan of `amount` won at `rate` basis points a year."""
    monthly_rate = rate / 10_000 / 12
    if monthly_rate == 0:
        payment = amount / term
    else:
        payment = amount * monthly_rate / (1 - (1 + monthly_rate) ** -term)
    payment_won = round(payment)
    return {
        "user_id": user_id,
        "amount_won": amount,
        "rate_bp": rate,
        "term_months": term,
        "monthly_payment_won": payment_won,
        "total_interest_won": payment_won * term - amount,
    }
