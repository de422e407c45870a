-- "Connect Instagram": single-use OAuth states, the connection's lifecycle, and an audit trail an
-- operator can read ("webhooks for @shop were off for 47 minutes, 3 DMs recovered").

CREATE TABLE oauth_states (
    -- SHA-256 of the state value: reading the table does not yield a usable state.
    state_hash  bytea PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    -- Set by the one callback that consumed it; a second use is refused.
    used_at     timestamptz
);
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);

ALTER TABLE instagram_credentials
    -- Which Meta login produced the token: decides the Graph host and how it is refreshed.
    ADD COLUMN login text NOT NULL DEFAULT 'facebook' CHECK (login IN ('facebook', 'instagram')),
    ADD COLUMN connected_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN token_refreshed_at timestamptz,
    ADD COLUMN token_checked_at timestamptz,
    ADD COLUMN subscribed_at timestamptz,
    ADD COLUMN disconnected_at timestamptz,
    -- Disconnecting deletes the token but keeps the account row (and so the conversation history).
    ALTER COLUMN access_token_enc DROP NOT NULL,
    ALTER COLUMN token_key_id DROP NOT NULL,
    ADD CONSTRAINT instagram_credentials_token_present
        CHECK (status = 'disconnected' OR access_token_enc IS NOT NULL);

-- What happened to a connection and when, newest last: connected, reconnected, disconnected,
-- token_refreshed, reauth_required, resubscribed, messages_recovered, …
CREATE TABLE account_events (
    id            uuid PRIMARY KEY,
    credential_id uuid NOT NULL REFERENCES instagram_credentials (id) ON DELETE CASCADE,
    kind          text NOT NULL,
    detail        jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_events_credential ON account_events (credential_id, created_at DESC);
