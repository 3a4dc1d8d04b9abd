"""Writes statsmodels_reference.json: Wilson and Newcombe intervals from statsmodels for
random counts, the reference tests/outcomes/test_proportions.py checks against.

statsmodels is not a dependency of mimetic; run this in a scratch environment:
    python -m venv /tmp/sm && /tmp/sm/bin/pip install statsmodels
    /tmp/sm/bin/python tests/outcomes/make_statsmodels_reference.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import statsmodels
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint


def main() -> None:
    rng = random.Random(20261201)
    single, pairs = [], []
    for _ in range(150):
        n = rng.choice([1, 2, 3, 5, 8, 13, 20, 40, 100, 263, 1000])
        x = rng.randint(0, n)
        low, high = proportion_confint(x, n, alpha=0.05, method="wilson")
        single.append({"x": x, "n": n, "low": float(low), "high": float(high)})
    for _ in range(150):
        n1, n2 = rng.choice([1, 3, 7, 10, 30, 80, 200]), rng.choice([1, 4, 10, 29, 56, 150])
        x1, x2 = rng.randint(0, n1), rng.randint(0, n2)
        low, high = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff", alpha=0.05)
        pairs.append({"x1": x1, "n1": n1, "x2": x2, "n2": n2, "low": float(low), "high": float(high)})
    out = {"statsmodels": statsmodels.__version__, "confidence": 0.95,
           "wilson": single, "newcombe": pairs}
    path = Path(__file__).with_name("data") / "statsmodels_reference.json"
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
