"""Request policy (pure Python): hashed API keys, tenants, rate limits (GCRA), budgets (reserve/settle
ledger), the one price table, audit, admin key. Built by ``app.policy.factory.build_policy``; the
pipeline stages in ``app/pipeline/{authenticate,admit,reserve,settle}.py`` call it. docs/policy.md."""
