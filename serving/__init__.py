"""HTTP and the audit trail: the scoring API, its answers, the audit store and the keys."""
