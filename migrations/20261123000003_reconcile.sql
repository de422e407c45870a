-- Reconciliation: which worker checks an account against the Conversations API, and up to when.

ALTER TABLE instagram_credentials
    -- The last successful reconcile started then: the next lists conversations updated since (minus a
    -- margin for Meta's clock and slow indexing).
    ADD COLUMN reconciled_at timestamptz,
    -- One worker of the fleet reconciles an account at a time; a crashed holder's lease simply expires.
    ADD COLUMN reconcile_lease_until timestamptz;
