"""What a claim may expect: each relation once, with the keys it needs, how it reads and how it is judged.

Claims validation (`config.claims`), the report's Findings, the claims file's header and the README all
read this registry. A relation judges an estimate (`analysis.stats.Estimate`: a mean with one-sided p
values against any null), taken relative to the claim's reference (A - B, A - its value, A - the chance
rate), by the 95% interval's place: **reproduced** when the interval lies wholly where
the claim says, **contradicted** when it lies wholly where the claim says it does not, else not shown.
Each such rule is one two-sided test, so a claim gives one p value, `decision_p`, for the report's family
correction (Holm), and the side it rejects towards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

FOR, AGAINST = "for", "against"


class Estimated(Protocol):
    mean: float

    def p_above(self, null: float) -> float: ...

    def p_below(self, null: float) -> float: ...


@dataclass(frozen=True)
class Decision:
    """A claim's test: its p value (two-sided: twice the smaller one-sided p of its two sides) and the side
    the data lean to, FOR the claim or AGAINST it."""

    p: float
    side: str


def _tails(p_for: float, p_against: float) -> Decision:
    return Decision(min(1.0, 2 * min(p_for, p_against)), FOR if p_for <= p_against else AGAINST)


def _above(null: Callable) -> Callable:
    return lambda estimate, claim: _tails(estimate.p_above(null(claim)), estimate.p_below(null(claim)))


def _below(null: Callable) -> Callable:
    return lambda estimate, claim: _tails(estimate.p_below(null(claim)), estimate.p_above(null(claim)))


def _within(estimate: Estimated, claim) -> Decision:
    """Equivalence by two one-sided tests: for, when the interval lies within +-margin (both one-sided tests
    reject); against, when it lies wholly beyond one end."""
    m = claim.margin
    p_for = max(estimate.p_above(-m), estimate.p_below(m))
    p_against = min(estimate.p_below(-m), estimate.p_above(m))
    return _tails(p_for, p_against)


@dataclass(frozen=True)
class Relation:
    name: str
    needs: tuple[str, ...]  # keys a claim must give besides source, says, metric and expect
    reads: str  # how the relation reads, for the claims file's header and the README
    judge: Callable[[Estimated, object], Decision] | None  # None: stated as measured, no test
    estimate: str  # what the estimate is: "a-b" (or a difference of changes), "a" (one run), "a-rate"
    optional: tuple[str, ...] = ()
    tested: bool = True  # False: each run's metric is compared with the value as measured, no test


def _zero(claim) -> float:
    return 0.0


RELATIONS: dict[str, Relation] = {relation.name: relation for relation in (
    Relation("more", ("a", "b"), "A > B; with a_base and b_base, (A - A base) > (B - B base)",
             _above(_zero), "a-b", ("a_base", "b_base")),
    Relation("less", ("a", "b"), "A < B; likewise", _below(_zero), "a-b", ("a_base", "b_base")),
    Relation("same", ("a", "b", "margin"), "|A - B| <= margin (the interval within +-margin)", _within, "a-b"),
    Relation("not-below", ("a", "b", "margin"), "A >= B - margin (at least as good, but for the margin)",
             _above(lambda claim: -claim.margin), "a-b"),
    Relation("at-least", ("a", "value"), "A >= value", _above(_zero), "a"),
    Relation("at-most", ("a", "value"), "A <= value", _below(_zero), "a"),
    Relation("at-chance", ("a", "margin"), "|A - the split's majority-class rate| <= margin", _within, "a-rate"),
    Relation("near", ("runs", "value", "margin"), "every run of `runs`, each seed, within margin of value "
             "(a number, or ln-classes), as measured", None, "each", tested=False),
    Relation("equals", ("a", "value"), "A's metric is exactly value (a property of the model)", None, "a",
             tested=False),
    Relation("measured", ("runs",), "each run of `runs` as measured (with b, its difference from b), no verdict",
             None, "each", ("b",), tested=False),
)}


def relation_lines() -> list[str]:
    """The relations as the claims file's header and the README list them."""
    width = max(len(name) for name in RELATIONS) + 1
    return [f"{name + ':':<{width}} {relation.reads} (needs {', '.join(relation.needs)})"
            for name, relation in RELATIONS.items()]
