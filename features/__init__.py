"""The case and the law.

The case-record contract, the wage base, the statutory rules, the synthetic history and the
case vectors.
"""
